"""The engine around the search space and the memory model, one package per stage: `config` (the
study file), `engine` (the search), `train`, `report`, `export` (ONNX, QONNX, C), `data`, and `cli`
(the only code that prints or exits)."""
