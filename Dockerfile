# emofusion as a SageMaker-compatible inference container (and a plain web service).
#   docker build -t emofusion .
#   docker run -p 8080:8080 emofusion            # SageMaker runs `docker run <image> serve`
# A model in /opt/ml/model (SageMaker's model.tar.gz) replaces the bundled one.
# The image carries its supply-chain reports in /opt/emofusion/reports: sbom.cdx.json (CycloneDX,
# the image's own Python environment) and audit.json (scripts/audit.py against OSV's PyPI export,
# downloaded at build time from ADVISORY_DB_URL; the build fails on a high or critical advisory of
# a direct dependency). Build offline with --build-arg ADVISORY_DB_URL= to skip the scan (audit.json
# then says it was not run).
FROM python:3.11-slim-bookworm
ARG ADVISORY_DB_URL=https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip

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

# The SBOM and the scan, made by tools in a throwaway virtualenv, so the image's environment (the
# one described) holds only what emofusion needs.
COPY scripts/audit.py ./scripts/audit.py
RUN python -m venv /tmp/tools && /tmp/tools/bin/pip install 'cyclonedx-bom>=7' packaging \
    && mkdir -p reports \
    && /tmp/tools/bin/cyclonedx-py environment /usr/local/bin/python --pyproject pyproject.toml --of JSON \
       --output-reproducible -o reports/sbom.cdx.json \
    && if [ -n "$ADVISORY_DB_URL" ]; then \
         python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/tmp/osv-pypi.zip')" "$ADVISORY_DB_URL" \
         && /tmp/tools/bin/python scripts/audit.py --sbom reports/sbom.cdx.json --db /tmp/osv-pypi.zip --out reports/audit.json; \
       else echo '{"result": "not run", "reason": "built with ADVISORY_DB_URL empty"}' > reports/audit.json; fi \
    && rm -rf /tmp/tools /tmp/osv-pypi.zip

USER emofusion
EXPOSE 8080
ENTRYPOINT ["emofusion"]
CMD ["serve"]
