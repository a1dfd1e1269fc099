"""Export a retrained network to run without this package: `python -m nas.export` (docs/export.md).

- `restore`: the stand-alone image classifier of a checkpoint, rebuilt with its weights;
- `inputs`: the inputs it needs (shape, the training data's normalisation, class names);
- `artifacts`: the `torch.export` program and the ONNX model, checked against the network;
- `run`: the whole export into a folder, with `manifest.json`; `cli`: the command line.
"""
