# syntax=docker/dockerfile:1
# jaxrl with CUDA JAX on a slim CUDA base: no PyTorch, no CUDA toolkit (the jax[cuda12] wheels bring CUDA's
# libraries; the host's NVIDIA driver is all the GPU side needs).
#
#   docker build -t jaxrl:cuda .
#   docker run --rm --gpus all -v "$PWD/runs:/work/runs" -v "$PWD/registry:/work/registry" jaxrl:cuda \
#       python -m jaxrl.train data=btc
#   docker build --build-arg JAX_EXTRA= -t jaxrl:cpu .     # CPU JAX (what the test builds)
#
# On Vast.ai: push it to a registry and rent with VAST_IMAGE=<your image> launch/vast.sh create <offer>.
ARG CUDA_BASE=nvidia/cuda:12.6.3-base-ubuntu24.04
FROM ${CUDA_BASE}

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    XLA_PYTHON_CLIENT_PREALLOCATE=false

# Ubuntu 24.04's Python 3.12 in a venv (JAX 0.11 on 3.12)
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/jaxrl
COPY pyproject.toml README.md ./
COPY jaxrl ./jaxrl
COPY hydra_conf ./hydra_conf
COPY data ./data
COPY launch ./launch
# cuda: jax[cuda12]; empty: CPU JAX
ARG JAX_EXTRA=cuda
RUN pip install -e ".${JAX_EXTRA:+[$JAX_EXTRA]}" \
    && python -m jaxrl.train --help > /dev/null

# runs/, registry/ and multirun/ are written under the working directory: mount it (or point registry.root at a
# bucket) to keep them.
WORKDIR /work
CMD ["python", "-m", "jaxrl.train", "--help"]
