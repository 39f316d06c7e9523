"""Cold-start baseline: a typical one-route FastAPI + Mangum Lambda that builds its DynamoDB client while
the module loads, as most tutorials do."""

from __future__ import annotations

import boto3
from fastapi import FastAPI
from mangum import Mangum

dynamodb = boto3.client("dynamodb")

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# lifespan off: the baseline pays nothing the app does not need (a stricter comparison for Stratus).
handler = Mangum(app, lifespan="off")
