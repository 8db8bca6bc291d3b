"""ASGI entry point for uvicorn: ``uvicorn service.app:app``."""

from service.main import create_app

app = create_app()
