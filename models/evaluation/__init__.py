"""Evaluation beside the metrics: whole held-out images scored through the same predictor and pipeline as inference.

`segmentation.score` serves training's validation and `landsentry evaluate`; `change` serves
`landsentry evaluate-change`. It imports the data, io, nn, inference and analysis layers, never
training or the service.
"""
