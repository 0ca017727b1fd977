"""testssl.sh (Debian's `testssl.sh`, offline) against a TLS listener: no finding rated HIGH or
CRITICAL. The certificate is made here by a local CA trusted with --add-ca, for the name the
scan uses, with a CRL distribution point as a public CA would put there."""

import json
import os
import shutil
import subprocess
import unittest

from harness import IntegrationTest, default_config, service


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@unittest.skipUnless(shutil.which("testssl"), "testssl.sh not installed")
class TestsslTest(IntegrationTest):
    def test_no_high_or_critical_finding(self):
        d = self.tmpdir
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.crt", "-days", "365", "-subj", "/CN=Test CA",
                cwd=d)
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", "/CN=example.com", cwd=d)
        with open(os.path.join(d, "leaf.ext"), "w") as f:
            f.write("subjectAltName=DNS:example.com\n"
                    "crlDistributionPoints=URI:http://ca.example.com/ca.crl\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", "leaf.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "leaf.crt", "-days", "120", "-extfile", "leaf.ext",
                cwd=d)
        echo = self.start_echo("hello-00001")
        config = default_config([service("hello", [("hello-00001", [echo])])],
                                domainMappings=[{"domain": "*", "service": "hello"}])
        config["listeners"] = [{
            "name": "https", "address": "127.0.0.1:0",
            "tls": {"certificates": [{"certFile": "leaf.crt", "keyFile": "leaf.key"}]}}]
        proxy = self.start_revgate(config)
        report = os.path.join(d, "testssl.json")
        result = subprocess.run(
            ["testssl", "--quiet", "--nodns", "none", "--warnings", "off", "--ip", "127.0.0.1",
             "--add-ca", os.path.join(d, "ca.crt"), "--jsonfile", report,
             f"example.com:{proxy.port}"],
            capture_output=True, text=True, timeout=600)
        self.assertTrue(os.path.exists(report), result.stdout[-2000:] + result.stderr[-2000:])
        with open(report) as f:
            findings = json.load(f)
        self.assertGreater(len(findings), 50, "the scan ran its checks")
        severe = [(x["id"], x["severity"], x["finding"]) for x in findings
                  if x["severity"] in ("HIGH", "CRITICAL")]
        self.assertEqual(severe, [])
        # The policy, as testssl.sh saw it.
        by_id = {x["id"]: x for x in findings}
        for old in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
            self.assertIn("not offered", by_id[old]["finding"], old)
        self.assertIn("offered", by_id["TLS1_3"]["finding"])


if __name__ == "__main__":
    unittest.main()
