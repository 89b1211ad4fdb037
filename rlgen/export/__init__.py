"""Deployment: ONNX export of rlgen's networks (``rlgen export``) and running exported policies."""
