"""`clipcls serve`: an HTTP prediction server (FastAPI + uvicorn) over a run directory, a
HuggingFace export or an ONNX/OpenVINO export."""
