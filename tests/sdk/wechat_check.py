"""Cross-check of unipay's WeChat Pay channel (`wechat_pay`, API v3) against PyPI `wechatpayv3`.

unipay's own tests check its WeChat Pay signing with published vectors and with a fake server
written from channels.md. This script asks a second, independent implementation instead: the
`wechatpayv3` SDK (2.0.4, pinned in tests/sdk/requirements-wechat.txt; channels.md E2). It
starts unipay on a temporary database and runs a tiny fake WeChat Pay API v3 in this process
whose crypto is the SDK's (`wechatpayv3.utils`: build_authorization, rsa_sign, rsa_verify,
aes_decrypt, load_private_key, load_public_key). The SDK has no AES-GCM encryption of its own:
notices are encrypted with `AESGCM` of `cryptography`, the library the SDK decrypts with, and
every ciphertext is checked with the SDK's `aes_decrypt` before it is sent. Then:

  a. unipay's Native prepay request: its `Authorization` signature verifies with the SDK over
     the exact method, path, timestamp, nonce and body received, and the SDK's
     `build_authorization` with the same timestamp (time.time patched) and nonce gives the same
     header byte for byte (PKCS#1 v1.5 is deterministic). The body is checked too.
  b. A Native reply signed by the SDK is accepted: pay is code 0 and payBody is the code_url.
     A copy whose body was changed after signing is refused: pay is not 0, the order `fail`.
  c. A TRANSACTION.SUCCESS notice made with the SDK's primitives (the Transaction encrypted
     with AES-256-GCM, AAD `transaction`, signed over TIMESTAMP\\nNONCE\\nBODY\\n) posted to
     /callback/wechat_pay/{appId} gets 204 and the order becomes `success`; before it, the same
     notice with one body byte changed, or with a wrong GCM tag (validly signed), gets a 4xx and
     changes nothing.
  d. The SDK's own `WeChatPay(...).callback(headers, body)` (public-key mode) accepts the notice
     unipay accepted in (c) and refuses the two bad ones: the notice format is WeChat Pay's.
  e. A close answered with an SDK-signed 204 (the signature over TIMESTAMP\\nNONCE\\n\\n) closes
     the order.

Usage: python wechat_check.py [UNIPAY_BIN]   (else env UNIPAY_BIN, else target/debug/unipay
relative to the repository root). Prints one `ok …` or `FAIL …` line per check and a closing
`N passed, N failed` line; exits non-zero when any check failed. Python 3.11, the standard
library and the SDK only; no network beyond 127.0.0.1.
"""

import base64
import datetime
import http.server
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from unittest import mock

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.utils import (aes_decrypt, build_authorization, load_private_key,
                               load_public_key, rsa_sign, rsa_verify)

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests" / "fixtures" / "wechat"

APP_ID = "A"  # unipay's app
MCH_NO = "M"
MCHID = "1900000001"
WX_APPID = "wx0000000000000001"
SERIAL_NO = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"  # the merchant certificate's serial
KEY_ID = "PUB_KEY_ID_0114232134912410000000000000"  # WeChat Pay's public key ID
APIV3_KEY = "0123456789abcdef0123456789ABCDEF"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"

MERCHANT_PRIVATE_PEM = (KEYS / "merchant-private-key.pem").read_text()
PLATFORM_PUBLIC_PEM = (KEYS / "platform-public-key.pem").read_text()
MERCHANT_PRIVATE = load_private_key(MERCHANT_PRIVATE_PEM)
MERCHANT_PUBLIC = load_public_key((KEYS / "merchant-public-key.pem").read_text())
PLATFORM_PRIVATE = load_private_key((KEYS / "platform-private-key.pem").read_text())
PLATFORM_PUBLIC = load_public_key(PLATFORM_PUBLIC_PEM)

CST = datetime.timezone(datetime.timedelta(hours=8))


def rfc3339_now():
    return datetime.datetime.now(CST).replace(microsecond=0).isoformat()


def signature_headers(body, timestamp=None):
    """WeChat Pay's signature headers for a reply or notice body (text), signed by the SDK."""
    ts = timestamp or str(int(time.time()))
    nonce = uuid.uuid4().hex.upper()
    return {
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": rsa_sign(PLATFORM_PRIVATE, "%s\n%s\n%s\n" % (ts, nonce, body)),
        "Wechatpay-Serial": KEY_ID,
        "Wechatpay-Signature-Type": SIGNATURE_TYPE,
    }


def parse_authorization(header):
    """The fields of `WECHATPAY2-SHA256-RSA2048 k="v",…`."""
    scheme, _, rest = header.partition(" ")
    if scheme != SIGNATURE_TYPE:
        raise AssertionError("Authorization scheme %r" % scheme)
    return dict(re.findall(r'(\w+)="([^"]*)"', rest))


def request_verifies(method, path, body, auth):
    """The SDK's rsa_verify over the five request lines: it builds `A\\nB\\nC\\n` from
    (timestamp, nonce, body), so those three carry METHOD, URL and `TIMESTAMP\\nNONCE\\nBODY`."""
    f = parse_authorization(auth)
    rest = "%s\n%s\n%s" % (f["timestamp"], f["nonce_str"], body)
    return rsa_verify(method, path, rest, f["signature"], MERCHANT_PUBLIC)


# ---------------------------------------------------------------------------------------------
# The fake WeChat Pay API v3: records every request, answers with SDK-signed replies.
# ---------------------------------------------------------------------------------------------


class FakeWechat:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # (method, raw path, headers, body bytes)
        self.code_urls = {}  # out_trade_no -> the code_url sent (signed, before any tampering)
        self.tamper_native = False
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                fake.handle(self)

            def do_POST(self):
                fake.handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self.lock:
            self.requests.append((h.command, h.path, dict(h.headers), raw))
        body = raw.decode("utf-8")
        auth = h.headers.get("Authorization") or ""
        if not h.headers.get("Accept") or not h.headers.get("User-Agent"):
            return self.reply(h, 400, {"code": "INVALID_REQUEST",
                                       "message": "Http头缺少Accept或User-Agent"})
        try:
            good = request_verifies(h.command, h.path, body, auth)
        except Exception:
            good = False
        if not good:
            return self.reply(h, 401, {"code": "SIGN_ERROR", "message": "签名错误"})
        path, _, _ = h.path.partition("?")
        if h.command == "POST" and path == "/v3/pay/transactions/native":
            code_url = "weixin://wxpay/bizpayurl?pr=" + secrets.token_hex(4)
            with self.lock:
                self.code_urls[json.loads(body)["out_trade_no"]] = code_url
            return self.reply(h, 200, {"code_url": code_url}, tamper=self.tamper_native)
        m = re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/?]+)/close", path)
        if h.command == "POST" and m and m.group(1) in self.code_urls:
            return self.reply(h, 204, None)
        if h.command == "POST" and m:
            return self.reply(h, 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"})
        return self.reply(h, 404, {"code": "NOT_FOUND", "message": "无效的请求路径"})

    def reply(self, h, status, obj, tamper=False):
        """Sends `obj` as JSON (nothing for None), signed with the SDK over the text sent; with
        `tamper`, signed over the text before one value was changed."""
        text = "" if obj is None else json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
        headers = signature_headers(text)
        if tamper:
            text = text.replace("bizpayurl?pr=", "bizpayurl?pr=EVIL")
        data = text.encode("utf-8")
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if data:
            h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def last(self, method, path_prefix):
        with self.lock:
            for r in reversed(self.requests):
                if r[0] == method and r[1].startswith(path_prefix):
                    return r
        raise AssertionError("no %s %s request received" % (method, path_prefix))


# ---------------------------------------------------------------------------------------------
# unipay: a server on a temporary database, driven with `unipay call`.
# ---------------------------------------------------------------------------------------------


class Unipay:
    def __init__(self, binary, workdir, fake_url):
        self.bin = binary
        self.db = str(Path(workdir) / "unipay.db")
        key_file = Path(workdir) / "apiv3.key"
        key_file.write_text(APIV3_KEY)
        self.run("app", "create", "--db", self.db, "--mch-no", MCH_NO, "--app-id", APP_ID,
                 "--req-timeout", "0")
        self.run("channel", "set", "--db", self.db, "--app-id", APP_ID, "wechat_pay",
                 "--mchid", MCHID, "--wx-appid", WX_APPID, "--serial-no", SERIAL_NO,
                 "--private-key-file", str(KEYS / "merchant-private-key.pem"),
                 "--apiv3-key-file", str(key_file),
                 "--platform-public-key-file", str(KEYS / "platform-public-key.pem"),
                 "--platform-public-key-id", KEY_ID, "--base-url", fake_url)
        self.stderr_path = Path(workdir) / "serve.stderr"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--db", self.db, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        first = self.proc.stdout.readline().decode().strip()
        if not first.startswith("listening on "):
            raise RuntimeError("unipay serve did not start: %r; stderr:\n%s"
                               % (first, self.stderr_path.read_text()))
        self.url = first[len("listening on "):]  # also the public URL notices go to
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def run(self, *args):
        out = subprocess.run([self.bin, *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("unipay %s: exit %d\n%s%s"
                               % (" ".join(args[:2]), out.returncode, out.stdout, out.stderr))
        return out.stdout

    def call(self, endpoint, body):
        out = self.run("call", "--db", self.db, "--app-id", APP_ID, "--url", self.url,
                       endpoint, json.dumps(body, ensure_ascii=False))
        return json.loads(out)

    def pay(self, biz_order_no):
        return self.call("pay", {"bizOrderNo": biz_order_no, "title": "t", "amount": "0.01",
                                 "channel": "wechat_pay", "method": "qrcode"})

    def order(self, biz_order_no):
        reply = self.call("query", {"bizOrderNo": biz_order_no})
        if reply.get("code") != 0:
            raise RuntimeError("query %s: %s" % (biz_order_no, reply))
        return reply["data"]

    def callback_url(self):
        return "%s/callback/wechat_pay/%s" % (self.url, APP_ID)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def post(url, headers, body):
    """One POST of `body` (text) with `headers`: (HTTP status, body text)."""
    req = urllib.request.Request(url, data=body.encode("utf-8"), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def encrypt(plain, nonce, aad="transaction"):
    """AES-256-GCM with the APIv3 key (the tag appended), base64; checked with the SDK."""
    sealed = AESGCM(APIV3_KEY.encode()).encrypt(nonce.encode(), plain.encode(), aad.encode())
    ciphertext = base64.b64encode(sealed).decode()
    if aes_decrypt(nonce, ciphertext, aad, APIV3_KEY) != plain:
        raise AssertionError("the SDK does not decrypt our ciphertext")
    return ciphertext


def notice(order_no, total, bad_tag=False):
    """A TRANSACTION.SUCCESS notice body (text) for a paid Native order, WeChat's key order."""
    tx = {
        "mchid": MCHID, "appid": WX_APPID, "out_trade_no": order_no,
        "transaction_id": "4200000001" + time.strftime("%Y%m%d") + "%010d" % (time.time_ns() % 10**10),
        "trade_type": "NATIVE", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
        "bank_type": "OTHERS", "attach": "", "success_time": rfc3339_now(),
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY",
                   "payer_currency": "CNY"},
    }
    nonce = secrets.token_hex(6)  # 12 ASCII characters
    ciphertext = encrypt(json.dumps(tx, ensure_ascii=False, separators=(",", ":")), nonce)
    if bad_tag:
        sealed = bytearray(base64.b64decode(ciphertext))
        sealed[-1] ^= 1
        ciphertext = base64.b64encode(bytes(sealed)).decode()
    body = {
        "id": str(uuid.uuid4()), "create_time": rfc3339_now(),
        "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {"original_type": "transaction", "algorithm": "AEAD_AES_256_GCM",
                     "ciphertext": ciphertext, "associated_data": "transaction",
                     "nonce": nonce},
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


class Checks:
    ORDER = ["a_native_request_signature", "b_signed_reply_accepted_tampered_refused",
             "c_notification_applied_bad_ones_refused", "d_sdk_callback_accepts_the_notice",
             "e_signed_204_close"]

    def __init__(self, unipay, fake):
        self.unipay = unipay
        self.fake = fake
        self.notices = {}

    def a_native_request_signature(self):
        reply = self.unipay.pay("B1")
        assert reply.get("code") == 0, "pay B1: %s" % reply
        self.b1 = reply["data"]
        method, path, headers, raw = self.fake.last("POST", "/v3/pay/transactions/native")
        body = raw.decode("utf-8")
        auth = headers.get("Authorization", "")
        f = parse_authorization(auth)
        assert f.get("mchid") == MCHID and f.get("serial_no") == SERIAL_NO, auth
        assert request_verifies(method, path, body, auth), "the SDK does not verify %r" % auth
        assert not request_verifies(method, path + "&", body, auth), "the path is not signed"
        assert not request_verifies(method, path, body + " ", auth), "the body is not signed"
        with mock.patch("wechatpayv3.utils.time.time", return_value=float(f["timestamp"])):
            sdk = build_authorization(path, method, MCHID, SERIAL_NO, MERCHANT_PRIVATE,
                                      data=body, nonce_str=f["nonce_str"])
        assert sdk == auth, "the SDK's header differs:\n  sdk    %s\n  unipay %s" % (sdk, auth)
        assert abs(int(f["timestamp"]) - time.time()) < 60, "timestamp %s" % f["timestamp"]
        for name in ("Accept", "User-Agent"):
            assert headers.get(name), "no %s header" % name
        assert headers.get("Content-Type", "").startswith("application/json"), headers
        req = json.loads(body)
        want = {"appid": WX_APPID, "mchid": MCHID, "out_trade_no": self.b1["orderNo"],
                "notify_url": self.unipay.callback_url(), "description": "t"}
        for k, v in want.items():
            assert req.get(k) == v, "%s is %r, not %r" % (k, req.get(k), v)
        assert req.get("amount") == {"total": 1, "currency": "CNY"}, req.get("amount")
        expire = datetime.datetime.fromisoformat(req["time_expire"])
        assert expire.utcoffset() == datetime.timedelta(hours=8), req["time_expire"]
        return "Authorization equals the SDK's byte for byte (%d-byte body)" % len(raw)

    def b_signed_reply_accepted_tampered_refused(self):
        code_url = self.fake.code_urls.get(self.b1["orderNo"])
        assert self.b1.get("payBody") == code_url, "payBody %r, not %r" % (
            self.b1.get("payBody"), code_url)
        assert self.b1.get("status") == "progress", self.b1
        self.fake.tamper_native = True
        try:
            reply = self.unipay.pay("B2")
        finally:
            self.fake.tamper_native = False
        assert reply.get("code") != 0, "a tampered reply was accepted: %s" % reply
        status = self.unipay.order("B2")["status"]
        assert status == "fail", "B2 is %s, not fail" % status
        return "payBody = code_url; tampered → code %s, order fail" % reply.get("code")

    def c_notification_applied_bad_ones_refused(self):
        order_no = self.b1["orderNo"]
        url = self.unipay.callback_url()
        good = notice(order_no, 1)
        i = good.index('"id":"') + len('"id":"')  # one byte of the notice id changed
        changed = good[:i] + ("0" if good[i] != "0" else "1") + good[i + 1:]
        bad_tag = notice(order_no, 1, bad_tag=True)
        self.notices = {"good": (signature_headers(good), good)}
        # One body byte changed after signing; a wrong GCM tag under a valid signature.
        self.notices["changed"] = (signature_headers(good), changed)
        self.notices["bad_tag"] = (signature_headers(bad_tag), bad_tag)
        for name in ("changed", "bad_tag"):
            headers, body = self.notices[name]
            status, text = post(url, headers, body)
            assert 400 <= status < 500, "%s notice: HTTP %d %s" % (name, status, text)
            st = self.unipay.order("B1")["status"]
            assert st == "progress", "after the %s notice B1 is %s" % (name, st)
        headers, body = self.notices["good"]
        status, text = post(url, headers, body)
        assert status == 204, "good notice: HTTP %d %r" % (status, text)
        st = self.unipay.order("B1")["status"]
        assert st == "success", "B1 is %s after the notice" % st
        status, _ = post(url, *self.notices["good"])
        assert status == 204, "the notice again: HTTP %d" % status
        return "204 and success; changed byte and wrong tag → 4xx, nothing changed"

    def d_sdk_callback_accepts_the_notice(self):
        wxpay = WeChatPay(wechatpay_type=WeChatPayType.NATIVE, mchid=MCHID,
                          private_key=MERCHANT_PRIVATE_PEM, cert_serial_no=SERIAL_NO,
                          appid=WX_APPID, apiv3_key=APIV3_KEY,
                          public_key=PLATFORM_PUBLIC_PEM, public_key_id=KEY_ID)
        headers, body = self.notices["good"]
        result = wxpay.callback(headers, body)
        assert result, "the SDK refuses the notice unipay accepted"
        resource = result["resource"]
        assert result["event_type"] == "TRANSACTION.SUCCESS", result
        assert resource["out_trade_no"] == self.b1["orderNo"], resource
        assert resource["trade_state"] == "SUCCESS", resource
        for name in ("changed", "bad_tag"):
            assert wxpay.callback(*self.notices[name]) is None, "the SDK accepts %s" % name
        return "callback() decrypts it (out_trade_no %s); refuses both bad ones" % (
            resource["out_trade_no"])

    def e_signed_204_close(self):
        reply = self.unipay.pay("B3")
        assert reply.get("code") == 0, "pay B3: %s" % reply
        reply = self.unipay.call("close", {"bizOrderNo": "B3"})
        assert reply.get("code") == 0, "close B3: %s" % reply
        method, path, headers, raw = self.fake.last("POST", "/v3/pay/transactions/out-trade-no/")
        assert path.endswith("/close") and json.loads(raw) == {"mchid": MCHID}, (path, raw)
        assert request_verifies(method, path, raw.decode(), headers["Authorization"])
        status = self.unipay.order("B3")["status"]
        assert status == "close", "B3 is %s" % status
        return "204 signed over TIMESTAMP\\nNONCE\\n\\n accepted; order close"


def unipay_binary():
    if len(sys.argv) > 1:
        return str(Path(sys.argv[1]).resolve())
    if os.environ.get("UNIPAY_BIN"):
        return str(Path(os.environ["UNIPAY_BIN"]).resolve())
    return str(REPO / "target" / "debug" / "unipay")


def main():
    binary = unipay_binary()
    if not os.access(binary, os.X_OK):
        print("FAIL unipay binary %s not found (cargo build first)" % binary)
        return 1
    fake = FakeWechat()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="wechat-check-") as workdir:
        try:
            unipay = Unipay(binary, workdir, fake.url)
        except Exception as e:
            print("FAIL setup: %s" % e)
            fake.stop()
            return 1
        try:
            checks = Checks(unipay, fake)
            for name in Checks.ORDER:
                label = "%s) %s" % (name[0], name[2:].replace("_", " "))
                try:
                    detail = getattr(checks, name)()
                    print("ok   %s: %s" % (label, detail), flush=True)
                    passed += 1
                except Exception as e:
                    why = str(e) if isinstance(e, AssertionError) else traceback.format_exc()
                    print("FAIL %s: %s" % (label, why), flush=True)
                    failed += 1
        finally:
            unipay.stop()
            fake.stop()
        if failed:
            print("--- unipay serve stderr (last 40 lines) ---")
            print("\n".join(unipay.stderr_path.read_text(errors="replace").splitlines()[-40:]))
    print("wechat_sdk: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
