"""nginx (Debian's package, installed by ``.ci/run``) as a round-robin HTTP and WebSocket proxy on loopback,
in front of several connector processes, as a load balancer without sticky sessions would be.

Each request goes to the next backend in turn, whatever connection it came on,
so the consecutive requests of one long-polling session land on different processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from testing.processes import free_port, stop, wait_for_port

CONFIG = """
{user}
worker_processes 1;
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {directory}/body;
  proxy_temp_path {directory}/proxy;
  fastcgi_temp_path {directory}/fastcgi;
  uwsgi_temp_path {directory}/uwsgi;
  scgi_temp_path {directory}/scgi;
  upstream connectors {{
{servers}
  }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 20m;
    location / {{
      proxy_pass http://connectors;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout 300s;
      proxy_buffering off;
      proxy_next_upstream {next_upstream};
    }}
  }}
}}
"""


def nginx_binary() -> str:
    binary = shutil.which("nginx") or next(
        (candidate for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(candidate, os.X_OK)), None
    )
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx; .ci/run does)")
    return binary


@dataclass(frozen=True)
class Proxy:
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def round_robin(backend_ports: list[int], *, retry_refused: bool = False) -> Iterator[Proxy]:
    """nginx on a free loopback port, passing each request to the next of ``backend_ports`` in turn.

    ``retry_refused``: a request whose backend refuses the connection (a process stopped, or not started yet)
    goes to the next one, as a load balancer stops sending to an instance that shut down; otherwise the
    client gets nginx's 502."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aa-nginx-") as directory:
        config = Path(directory) / "nginx.conf"
        config.write_text(CONFIG.format(
            # As root, nginx's worker would run as nobody, who cannot use this directory.
            user="user root;" if os.geteuid() == 0 else "",
            directory=directory,
            port=port,
            next_upstream="error" if retry_refused else "off",
            servers="\n".join(f"    server 127.0.0.1:{backend};" for backend in backend_ports),
        ))
        process = subprocess.Popen([nginx_binary(), "-c", str(config), "-p", directory, "-e",
                                    f"{directory}/error.log"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, process=process)
            yield Proxy(port)
        finally:
            stop(process)
