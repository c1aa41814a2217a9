# emofusion as a SageMaker-compatible inference container (and a plain web service).
#   docker build -t emofusion .
#   docker run -p 8080:8080 emofusion            # SageMaker runs `docker run <image> serve`
# A model in /opt/ml/model (SageMaker's model.tar.gz) replaces the bundled one.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    MALLOC_ARENA_MAX=2 \
    PIP_NO_CACHE_DIR=1 \
    EMOFUSION_HOME=/var/lib/emofusion \
    EMOFUSION_HOST=0.0.0.0

RUN apt-get update \
    && apt-get install -y --no-install-recommends libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/emofusion
COPY pyproject.toml README.md ./
COPY src ./src
# The CPU build of torch first (from PyTorch's CPU index), so no requirement can pull a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install '.[postgres,s3]' \
    && useradd --system --home-dir /var/lib/emofusion --create-home emofusion

USER emofusion
EXPOSE 8080
ENTRYPOINT ["emofusion"]
CMD ["serve"]
