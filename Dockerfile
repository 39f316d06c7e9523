# The Stratus functions as one Lambda container image: arm64, AWS's python3.13 base image, the dependencies of
# requirements/lambda.txt (derived from uv.lock, the same list the zip layer installs), the app's code, and
# bytecode compiled in the image. tools/image_template.py makes the template that deploys it; each function
# names its handler as the image's command (main.handler by default). docs/operations.md, "Container image".
#
#   docker build --platform linux/arm64 -t stratus .

ARG BASE_IMAGE=public.ecr.aws/lambda/python:3.13
FROM --platform=linux/arm64 ${BASE_IMAGE}

# Dependencies first, so that a code change rebuilds only the layers below. --no-deps: the file is the
# complete, marker-resolved lock; wheels only: nothing compiles from source in the image.
COPY requirements/lambda.txt /tmp/lambda.txt
RUN python -m pip install --no-cache-dir --disable-pip-version-check --no-input --no-deps --no-compile \
        --only-binary=:all: --target "${LAMBDA_TASK_ROOT}" --requirement /tmp/lambda.txt \
    && rm /tmp/lambda.txt

# .dockerignore keeps build files and caches out.
COPY src/ ${LAMBDA_TASK_ROOT}/

# Unchecked hash-based bytecode, as the zip artifacts ship it: used without reading the sources.
RUN python -m compileall -q -f -j0 --invalidation-mode unchecked-hash "${LAMBDA_TASK_ROOT}"

CMD ["main.handler"]
