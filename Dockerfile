# One image for every Huisheng process. The container's command picks the process:
#   huisheng service tickets | notify | volunteers | directory | gateway
# (see kernel/platform.py PROCESSES and docker-compose.yml). The compose file's demo SMS and
# WeChat stand-ins run from it too: python -m standins.sms, python -m standins.wechat.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

# A CJK font the volunteers' PDF service records embed (services/volunteers/records.py).
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-zenhei \
 && rm -rf /var/lib/apt/lists/*

# Unprivileged user with a fixed numeric id (so runtimes can verify "non-root").
RUN groupadd --system --gid 10001 huisheng \
 && useradd --system --uid 10001 --gid huisheng --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin huisheng \
 && install -d -o huisheng -g huisheng -m 0750 /var/lib/huisheng

WORKDIR /src

# Install the project with its pinned dependency set; the source tree is only
# needed at build time, so it is removed after the install.
COPY . .
RUN pip install --no-cache-dir -c constraints.txt . \
 && command -v huisheng \
 && cd / && rm -rf /src

WORKDIR /var/lib/huisheng
ENV HUISHENG_HOME=/var/lib/huisheng \
    LOG_FORMAT=json

USER 10001:10001

CMD ["huisheng", "--help"]
