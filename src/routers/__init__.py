"""One APIRouter per domain; routers translate HTTP to service calls and back."""
