"""Connecting to the online store's Redis: a single server (``redis://``, ``rediss://``) or a Redis
Cluster (``redis+cluster://host:port,...``, or a list of nodes in featurestore.yaml), with the TLS and
password settings of the project config; URLs shown without their password.

Every process that connects (the SDK, ``serve``'s workers, the streaming job's Redis writer) goes
through :func:`connect` with the URL of :func:`connection_url`, so they reach Redis the same way.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple


def redact(url: str) -> str:
    """The URL without its password (and without the TLS file paths :func:`connection_url` adds)."""
    from urllib.parse import urlsplit, urlunsplit

    if is_cluster(url):  # several host:port: not a netloc urlsplit can parse
        head, sep, rest = url.split("?", 1)[0].partition("://")
        auth, at, nodes = rest.rpartition("@")
        if at and ":" in auth:
            auth = auth.split(":", 1)[0] + ":***"
        return head + sep + auth + at + nodes
    parts = urlsplit(url)._replace(query="")
    if parts.password is None:
        return urlunsplit(parts)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


TLS_QUERY = {"redis_tls_ca_cert": "ssl_ca_certs", "redis_tls_cert": "ssl_certfile", "redis_tls_key": "ssl_keyfile"}


def connection_url(cfg) -> str:
    """The Redis URL of a ProjectConfig with its TLS settings in the query, where redis-py reads them
    (``ssl_ca_certs``: the private CA to trust, ``ssl_certfile``/``ssl_keyfile``: a client certificate,
    as absolute paths; ``ssl_check_hostname``), so every process that connects (this one, the streaming
    job's writer, serve's workers) verifies the server the same way. ``rediss://`` when TLS is on."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    url = cfg.redis_url
    if cfg.redis_tls and url.startswith(("redis://", "redis+cluster://")):
        url = "rediss" + url[len("redis"):]
    if not url.startswith(("rediss://", "rediss+cluster://")):
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for attr, name in TLS_QUERY.items():
        if getattr(cfg, attr):
            query[name] = str(cfg.path(getattr(cfg, attr)).resolve())
    query["ssl_check_hostname"] = "true" if cfg.redis_tls_check_hostname else "false"
    return urlunsplit(parts._replace(query=urlencode(query)))


CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://host:port[,host:port...]``)."""
    return url.startswith(CLUSTER_SCHEMES)


def cluster_url(nodes: Sequence[str]) -> str:
    """The ``redis+cluster://`` URL of a list of cluster nodes (``host:port``, or ``redis://host:port``
    / ``rediss://host:port`` URLs; any ``rediss://`` node makes the whole cluster TLS)."""
    tls = False
    addrs = []
    for node in nodes:
        node = str(node).strip()
        for scheme in ("rediss://", "redis://"):
            if node.startswith(scheme):
                tls = tls or scheme == "rediss://"
                node = node[len(scheme):]
        addrs.append(node.split("/", 1)[0])
    return ("rediss+cluster://" if tls else "redis+cluster://") + ",".join(addrs)


def parse_cluster_url(url: str) -> Tuple[List[Tuple[str, int]], dict]:
    """The startup nodes and client options of a ``redis+cluster://[user:password@]host:port,...[?query]``
    URL (query: the TLS file options :func:`connection_url` adds). Raises ValueError naming what is wrong."""
    from urllib.parse import parse_qsl, unquote

    scheme, rest = url.split("://", 1)
    rest, _, query = rest.partition("?")
    rest = rest.split("/", 1)[0]  # a cluster has only database 0
    opts: dict = {}
    if "@" in rest:
        auth, rest = rest.rsplit("@", 1)
        user, _, password = auth.partition(":")
        if user:
            opts["username"] = unquote(user)
        if password:
            opts["password"] = unquote(password)
    nodes = []
    for addr in rest.split(","):
        host, _, port = addr.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster node {addr.strip()!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if scheme == "rediss+cluster":
        opts["ssl"] = True
    for name, value in parse_qsl(query):
        opts[name] = value if name != "ssl_check_hostname" else value.lower() in ("1", "true", "yes")
    return nodes, opts


def connect(url: str, password: Optional[str] = None, tls: bool = False):
    """A redis-py client (connection pool) for the online store; TLS turns ``redis://`` into
    ``rediss://``. Nothing is sent until the first command, except for a cluster
    (``redis+cluster://``): its :class:`redis.cluster.RedisCluster` reads the slot map from the first
    startup node that answers, and follows MOVED/ASK redirections and failovers from then on."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    if tls and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://"):]
    if tls and url.startswith("redis+cluster://"):
        url = "rediss+cluster://" + url[len("redis+cluster://"):]
    # No health-check PINGs (they would add round trips to a lookup); a dropped connection is retried
    # instead (every command we send is idempotent).
    kwargs = {
        "socket_connect_timeout": 3.0,
        "socket_timeout": 30.0,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError],
    }
    if password:
        kwargs["password"] = password
    if is_cluster(url):
        from redis.cluster import ClusterNode, RedisCluster

        nodes, opts = parse_cluster_url(url)
        kwargs.update(opts)
        if password:
            kwargs["password"] = password
        # A failover takes the cluster a few seconds (cluster-node-timeout + election): the client
        # re-reads the slot map and retries for longer than a single node's reconnect.
        kwargs["retry"] = Retry(ExponentialBackoff(cap=1.0, base=0.1), 6)
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in nodes], cluster_error_retry_attempts=6,
                            **kwargs)
    return redis.Redis.from_url(url, **kwargs)


__all__ = ["CLUSTER_SCHEMES", "TLS_QUERY", "cluster_url", "connect", "connection_url", "is_cluster",
           "parse_cluster_url", "redact"]
