"""The service's routes, one `APIRouter` per audience; `create_app` includes them all."""
