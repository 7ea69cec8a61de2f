"""Artifacts a run leaves and a user ships: one resolver that says what a path or Hub id holds (resolve), and the
model card, ONNX export, torch-free inference, server and Hub push built on it; `extras` loads what needs the optional
deployment packages. Imports nothing, so `gendistill.artifacts.inference` stays torch-free."""
