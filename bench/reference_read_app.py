"""First-read baseline: the reference function (FastAPI + Mangum + a boto3 client made while the module
loads) with one route that reads one item, as a tutorial's first DynamoDB read looks."""

from __future__ import annotations

import os

import boto3
from fastapi import FastAPI
from mangum import Mangum

dynamodb = boto3.client("dynamodb")
TABLE_NAME = os.environ["TABLE_NAME"]

app = FastAPI()


@app.get("/item")
async def item() -> dict[str, bool]:
    found = dynamodb.get_item(TableName=TABLE_NAME, Key={"pk": {"S": "ITEM#1"}, "sk": {"S": "ITEM#1"}})
    return {"found": "Item" in found}


handler = Mangum(app, lifespan="off")
