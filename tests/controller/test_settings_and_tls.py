"""Operator settings (refusals name the setting), the self-signed webhook certificate, and the
``hwtune operator`` command's input checks."""

from __future__ import annotations

import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwtune.cli.main import app
from hwtune.controller import FailurePolicy, LogFormat, OperatorSettings, SettingsError
from hwtune.controller.tls import write_self_signed_certificate


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"webhook_port": 0}, "webhook_port"),
    ({"webhook_port": 70000}, "webhook_port"),
    ({"webhook_host": ""}, "webhook_host"),
    ({"log_format": "jsn"}, "log_format"),
    ({"failure_policy": "ignore-it"}, "failure_policy"),
    ({"namespaces": ("Team_A",)}, "namespaces"),
    ({"webhook_configuration": "Auto_Hwtune"}, "webhook_configuration"),
    ({"peering_name": "has space"}, "peering_name"),
    ({"pool_read_timeout_s": 0}, "pool_read_timeout_s"),
    ({"pool_read_timeout_s": 45}, "pool_read_timeout_s"),
    ({"shutdown_timeout_s": 0}, "shutdown_timeout_s"),
    ({"kubeconfig": Path("/no/such/kubeconfig")}, "kubeconfig"),
    ({"webhook_service": "hwtune-operator"}, "webhook_service"),
    ({"webhook_service": "Sys/op"}, "webhook_service"),
    ({"webhook_service_port": 0}, "webhook_service_port"),
    ({"webhook_certfile": Path("/no/cert")}, "webhook_certfile, webhook_keyfile"),
])
def test_bad_settings_are_refused_naming_the_setting(kwargs: dict, field: str) -> None:
    with pytest.raises(SettingsError, match=rf"^{field}: "):
        OperatorSettings(**kwargs)


def test_settings_defaults_and_coercion() -> None:
    settings = OperatorSettings(log_format="json", failure_policy="Ignore")
    assert settings.log_format is LogFormat.JSON
    assert settings.failure_policy is FailurePolicy.IGNORE
    assert settings.clusterwide and settings.webhook_configuration == "auto.hwtune.io"
    assert not OperatorSettings(namespaces=("team-*", "!kube-system")).clusterwide


def test_listen_address_follows_an_ip_host_and_binds_everything_for_a_dns_name() -> None:
    assert OperatorSettings(webhook_host="127.0.0.1").listen_address == "127.0.0.1"
    assert OperatorSettings(webhook_host="hwtune.hwtune-system.svc").listen_address == "0.0.0.0"
    assert OperatorSettings(webhook_host="svc", webhook_listen="10.0.0.5").listen_address \
        == "10.0.0.5"
    in_cluster = OperatorSettings(webhook_service="hwtune-system/hwtune-operator")
    assert in_cluster.service == ("hwtune-system", "hwtune-operator")
    assert in_cluster.listen_address == "0.0.0.0"  # Service traffic arrives on the pod IP


def test_service_webhook_server_registers_the_service_with_the_ca_bundle(tmp_path: Path) -> None:
    import asyncio
    import base64

    from hwtune.controller.webhook import ServiceWebhookServer, service_hostnames

    names = service_hostnames("hwtune-system", "hwtune-operator")
    assert names[0] == "hwtune-operator.hwtune-system.svc"
    cert, key = write_self_signed_certificate(tmp_path, names + ["127.0.0.1"])
    server = ServiceWebhookServer(service_namespace="hwtune-system",
                                  service_name="hwtune-operator", service_port=443,
                                  addr="127.0.0.1", port=None, certfile=str(cert),
                                  pkeyfile=str(key))

    async def first_config() -> dict:
        async def never_called(*args: object, **kwargs: object) -> dict:
            raise AssertionError("no request is sent in this test")

        configs = server(never_called)
        try:
            return await anext(configs)
        finally:
            await configs.aclose()  # stops the aiohttp site

    config = asyncio.run(first_config())
    assert config["service"] == {"namespace": "hwtune-system", "name": "hwtune-operator",
                                 "port": 443, "path": ""}
    assert "url" not in config
    assert base64.b64decode(config["caBundle"]) == cert.read_bytes()


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, host: str) -> None:
    """A TLS handshake over memory buffers: the client verifies the certificate for ``host``."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server_side = server.wrap_bio(s_in, s_out, server_side=True)
    client_side = client.wrap_bio(c_in, c_out, server_hostname=host)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, side in (("client", client_side), ("server", server_side)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_self_signed_certificate_is_trusted_for_its_ip_and_names(tmp_path: Path) -> None:
    from cryptography import x509

    cert, key = write_self_signed_certificate(
        tmp_path / "tls", ["127.0.0.1", "0.0.0.0", "hwtune.hwtune-system.svc", "127.0.0.1"])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    parsed = x509.load_pem_x509_certificate(cert.read_bytes())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["hwtune.hwtune-system.svc"]

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    # The certificate is its own CA bundle, as in the webhook configuration's caBundle.
    client = ssl.create_default_context(cadata=cert.read_text())
    _handshake(server, client, "127.0.0.1")
    _handshake(server, ssl.create_default_context(cadata=cert.read_text()),
               "hwtune.hwtune-system.svc")
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, ssl.create_default_context(cadata=cert.read_text()), "10.9.9.9")


def test_certificate_needs_a_usable_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="hostnames"):
        write_self_signed_certificate(tmp_path, ["0.0.0.0"])


def test_operator_command_refuses_bad_options_before_starting() -> None:
    result = CliRunner().invoke(app, ["operator", "--log-format", "jsn"])
    assert result.exit_code == 2
    assert "log_format: must be json or plain" in result.output
    result = CliRunner().invoke(app, ["operator", "--webhook-cert", "/no/cert"])
    assert result.exit_code == 2
    assert "webhook_certfile, webhook_keyfile: give both or neither" in result.output


def test_webhook_refusals_are_logged_as_info_and_crashes_stay_errors(caplog) -> None:
    import logging

    from hwtune.controller.operator import _install_log_filters

    _install_log_filters()
    _install_log_filters()  # idempotent: each filter once however often the operator starts
    objects = logging.getLogger("kopf.objects")
    assert len(objects.filters) == 2  # refusals as INFO; watch-handler successes silenced
    with caplog.at_level(logging.INFO, logger="kopf.objects"):
        objects.error("Webhook 'validate-tuning-study' failed permanently: spec.hardware.pools[0]")
        objects.error("Webhook 'validate-tuning-study' failed with an exception and will stop")
    assert [r.levelname for r in caplog.records] == ["INFO", "ERROR"]
