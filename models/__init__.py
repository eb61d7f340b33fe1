"""landsentry inference package: class schema, network, checkpoints, rasters, tiled prediction.

Everything the service and `landsentry predict` need lives here; nothing here imports `training`.
"""
