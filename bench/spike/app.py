"""The seeds' backend (seed 002): FastAPI with a pydantic model behind POST /models, run by
uvicorn with its defaults, as the seeds run it (a 5 s keep-alive timeout among them)."""

import os
import socket

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()
TAG = os.environ.get("HOST_TAG", "back")


class Model(BaseModel):
    name: str
    pieces: int
    theme: str
    difficulty: str
    price_us: float
    year: int


@app.get("/")
def root():
    return {"message": "ok", "host": f"tag: {TAG} - {socket.gethostname()}"}


@app.get("/health")
def health():
    return {"status": "healthy"}


@app.post("/models")
def create(model: Model):
    return {
        "host": f"tag: {TAG} - {socket.gethostname()}",
        "success": True,
        "message": "Item created successfully",
        "data": model.model_dump(),
    }
