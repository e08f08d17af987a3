"""Training sets from a featurestore offline server, under its access control (no Feast registry needed).

The SDK (``FeatureStore``) reads the offline files itself and so is governed by their permissions only. A team that
must build training sets only as its roles allow gets the offline server's address and a token instead
(``featurestore serve --offline-port``, docs/access-control.md)::

    from featurestore.offline_client import OfflineClient

    client = OfflineClient("features.internal", 8815, token=os.environ["FEATURESTORE_TOKEN"], tls_root_cert="ca.pem")
    df = client.get_historical_features(entity_df, features=["user_spend:tx_count_1h"])
    df = client.get_historical_features(entity_df, feature_service="fraud_model_v1", full_feature_names=True)

It speaks Feast's remote offline store protocol (``do_exchange`` of a command and the entity DataFrame,
:mod:`featurestore.server_offline`), plus a ``feature_service`` name Feast's client does not send. The values are
the server's ``FeatureStore.get_historical_features``; the DataFrame is converted as the SDK converts it (an
integer column with a null stays exact beyond 2^53). Refusals are our one-line errors: :class:`AccessError` for
a missing or invalid token (unauthenticated) and a missing ``read_offline`` right, :class:`RequestError` for a bad
request, :class:`InfraError` when the server cannot be reached.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Optional, Sequence

from featurestore.errors import AccessError, InfraError, RequestError


def _short(exc: Exception) -> str:
    """The server's message without gRPC's debug context."""
    return str(exc).split(". Detail:")[0].split(". gRPC client debug context")[0].strip()


class OfflineClient:
    """A client of one offline server (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8815, token: Optional[str] = None,
                 tls_root_cert: Optional[str] = None, project: Optional[str] = None, timeout: Optional[float] = None):
        import pyarrow.flight as fl

        kwargs = {}
        if tls_root_cert is not None:
            kwargs["tls_root_certs"] = Path(tls_root_cert).read_bytes()
        self._client = fl.FlightClient(f"{'grpc+tls' if tls_root_cert else 'grpc+tcp'}://{host}:{port}", **kwargs)
        self._where = f"{host}:{port}"
        headers = [(b"authorization", b"Bearer " + token.encode())] if token else []
        self._options = fl.FlightCallOptions(headers=headers, timeout=timeout)
        self.project = project

    def get_historical_features(self, entity_df, features: Optional[Sequence[str]] = None,
                                feature_service: Optional[str] = None, full_feature_names: bool = False):
        """Point-in-time-correct feature values for every row of ``entity_df``, as the server's
        ``FeatureStore.get_historical_features`` computes them (a pandas DataFrame)."""
        import pandas as pd
        import pyarrow as pa
        import pyarrow.flight as fl

        from featurestore.sdk.historical import features_to_pandas

        if (features is None) == (feature_service is None):
            raise RequestError("give exactly one of features=[...] or feature_service=...")
        if not isinstance(entity_df, pd.DataFrame):
            raise RequestError(f"entity_df must be a pandas DataFrame, got {type(entity_df).__name__}")
        command = {"command_id": str(uuid.uuid4()), "api": "get_historical_features",
                   "feature_refs": list(features) if features is not None else [],
                   "feature_view_names": [], "name_aliases": [], "project": self.project,
                   "full_feature_names": bool(full_feature_names)}
        if feature_service is not None:
            command["feature_service"] = feature_service
        table = pa.Table.from_pandas(entity_df)
        try:
            writer, reader = self._client.do_exchange(fl.FlightDescriptor.for_command(json.dumps(command)),
                                                      self._options)
            writer.begin(table.schema)
            writer.write_table(table)
            writer.done_writing()
            result = reader.read_all()
        except (fl.FlightUnauthenticatedError, fl.FlightUnauthorizedError) as exc:
            raise AccessError(_short(exc)) from None
        except fl.FlightUnavailableError as exc:
            raise InfraError(f"offline server {self._where}: {_short(exc)}") from None
        except fl.FlightError as exc:
            raise RequestError(_short(exc)) from None
        return features_to_pandas(result)

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["OfflineClient"]
