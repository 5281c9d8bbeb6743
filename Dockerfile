# One image for web and workers (docker-compose.yml picks the command from the Procfile).
FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 STUDIO_VAR_DIR=/var/lib/studio STUDIO_PRETRAINED_DIR=/opt/studio/pretrained
RUN apt-get update && apt-get install -y --no-install-recommends make gcc libc6-dev \
      gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml ./
COPY studio ./studio
COPY projects ./projects
COPY workers ./workers
RUN pip install -e .
COPY . .
RUN python -m workers.ml.learn.efficientnet_lite install --dest "$STUDIO_PRETRAINED_DIR" || true
EXPOSE 8000
CMD ["sh", "-c", "daphne -b ${HOST:-127.0.0.1} -p ${PORT:-8000} studio.asgi:application"]
