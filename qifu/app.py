"""ASGI entry point for uvicorn: ``uvicorn qifu.app:app``."""

from qifu.main import create_app

app = create_app()
