"""The data layer: dataset layouts, mask and label reading, pair discovery, splits and metrics.

Training, evaluation, the service and bench all read labelled data through here, so nothing
re-implements a layout or a mask reader. It imports only the vocabulary and io layers.

- `records`: `Record` / `PairRecord`, file listing and problem reports;
- `layouts`, `change_layouts`: one class per dataset layout with its metadata; `find_pairs`;
- `registry`: `name:PATH` specs to layouts;
- `masks`: THE mask / class-map / change-label reader; `images`: whole images as a model sees them;
- `samples`: records checked up front and read whole; `splits`: hold-outs by source scene;
- `statistics`: class balance; `metrics`: confusion matrix and binary change scores.
"""
