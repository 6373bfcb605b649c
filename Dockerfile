# One image that runs `make serve`: WORKERS Streamlit processes behind nginx on port 8501.
#
#   docker build -t resviz .
#   docker run --rm -p 8501:8501 -e WORKERS=4 -v resviz-data:/data resviz
#
# Not built here (this machine reaches no image registry); see the README, "Serving many visitors".
FROM python:3.11-slim

# nginx from Debian, as `make setup-dev` installs it; make runs the same targets as on a laptop.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# The requirements first, so that code changes reuse the (large) installed layer. CPU wheels of
# torch by default (about 1 GB less than the CUDA ones); --build-arg PIP_EXTRA_INDEX_URL= for CUDA.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
COPY Makefile requirements.txt ./
RUN make setup && rm -rf /root/.cache/pip
COPY . .
# COPY may give requirements.txt a newer time than the install's stamp: make must not reinstall.
RUN touch .venv/.runtime

# Everything a visitor creates or downloads lives under /data: mount shared storage there so that
# every container (and every worker in it) sees the same saved runs.
ENV RESVIZ_RUNS_DIR=/data/runs \
    RESVIZ_DATA_DIR=/data/datasets \
    TORCH_HOME=/data/torch \
    PYTHONUNBUFFERED=1
VOLUME /data
EXPOSE 8501

# Through nginx, so the check fails when the proxy or every worker is down.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s \
    CMD .venv/bin/python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=8)"

# make forwards SIGTERM (docker stop) to serve.py, which stops nginx and the workers.
CMD ["make", "serve", "PORT=8501"]
