"""Operations: GET /metrics for Prometheus."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..dependencies import ServicesDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
def metrics(services: ServicesDep) -> Response:
    body, content_type = services.metrics.render()
    return Response(body, media_type=content_type)
