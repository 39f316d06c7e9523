"""Warm-latency baseline: the least a FastAPI + Mangum route can cost per invocation (one `async def`
route, lifespan off, no middleware, no logging)."""

from __future__ import annotations

from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


handler = Mangum(app, lifespan="off")
