"""Cross-check of unipay's Alipay channel (`ali_pay`) against Alipay's official Python SDK.

unipay's own tests compare its Alipay signing with published vectors and with a fake gateway
written from channels.md. This script asks a second, independent implementation instead: the
official `alipay-sdk-python` (pinned in tests/sdk/requirements.txt). It starts unipay on a
temporary database and runs a tiny fake Alipay gateway in this process whose crypto is ONLY
the SDK's (`alipay.aop.api.util.SignatureUtils`: get_sign_content, verify_with_rsa,
sign_with_rsa2). Then:

  a. unipay's alipay.trade.precreate request verifies with the SDK (the merged query and form
     parameters without `sign`), and the SDK's signature of the same content equals unipay's
     `sign` byte for byte (PKCS#1 v1.5 is deterministic). The title has raw UTF-8 and `+&=%`
     in it, so an encoding slip shows; `timestamp` must be UTC+8, `notify_url` the callback.
  b. A precreate reply signed by the SDK (the node text as sent, `\\/` escapes kept) is
     accepted: the pay reply is code 0 and its payBody is the reply's qr_code.
  c. The same kind of reply with qr_code changed after signing is refused: the pay reply is
     20080, not 0, and the order is `fail`.
  d. A wap pay's URL (no server call) carries query parameters that verify with the SDK.
  e. A payment notification signed with the SDK by the V1 rule is answered exactly `success`
     and the order becomes `success`; Alipay's retry of it gets `success` again.
  f. The notification with total_amount (or trade_no) changed after signing is refused and
     changes nothing; so is one validly signed over another app_id.
  g. The SDK's own client (DefaultAlipayClient.execute, with the port workaround of
     channels.md E2) and its private response parser accept the fake's replies, and refuse
     the tampered one: the fake's reply format is Alipay's, so (b) and (c) mean something.

Usage: python alipay_check.py [UNIPAY_BIN]   (else env UNIPAY_BIN, else target/debug/unipay
relative to the repository root). Prints one `ok …` or `FAIL …` line per check and a closing
`N passed, N failed` line; exits non-zero when any check failed. Python 3.11, the standard
library and the SDK only; no network beyond 127.0.0.1.
"""

import datetime
import http.client
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import alipay.aop.api.util.WebUtils as WebUtils
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.constant.CommonConstants import THREAD_LOCAL
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeQueryModel import AlipayTradeQueryModel
from alipay.aop.api.exception.Exception import ResponseException
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.response.AlipayTradeQueryResponse import AlipayTradeQueryResponse
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa2, verify_with_rsa

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests" / "fixtures" / "alipay"

APP_ID = "SDK_APP"  # unipay's app
MCH_NO = "SDK_MCH"
SECRET = "sdk-check-secret"
ALIPAY_APP_ID = "2021000122671080"  # the app's id at Alipay
OTHER_ALIPAY_APP_ID = "2021000199999999"
# A title with raw UTF-8, a space, a slash, quotes and the characters that form-encoding must
# escape: the signature covers the decoded text, so any encoding slip shows.
TITLE = '咖啡 a+b&c=d%20/1 "q"'


def key_body(name):
    """A key file's base64 body without its `-----` armour lines, as Alipay's key tool writes
    keys and as the SDK wants them (it adds the armour itself)."""
    lines = (KEYS / name).read_text().splitlines()
    return "".join(line.strip() for line in lines if line.strip() and not line.startswith("-----"))


# The SDK reads private keys as PKCS#1 only: both private key files here are PKCS#1.
APP_PRIVATE = key_body("app-private-key.pem")
APP_PUBLIC = key_body("app-public-key.pem")
GATEWAY_PRIVATE = key_body("gateway-private-key.pem")
GATEWAY_PUBLIC = key_body("gateway-public-key.pem")


def sdk_verify(public_key, content, sign):
    """The SDK's verify_with_rsa, as a boolean (the `rsa` package raises on a mismatch)."""
    try:
        return verify_with_rsa(public_key, content.encode("utf-8"), sign)
    except Exception:
        return False


def without(params, *names):
    return {k: v for k, v in params.items() if k not in names}


# ---------------------------------------------------------------------------------------------
# The fake Alipay gateway: verifies requests and signs replies with the SDK's functions only.
# ---------------------------------------------------------------------------------------------


class FakeAlipay:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # every request: its parameters, verification and reply bytes
        self.precreate_mode = "good"  # or "tampered": qr_code changed after signing
        self.trades = {}  # out_trade_no -> fields of a query reply
        self.counter = 0
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                fake.handle(self)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/gateway.do" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    def handle(self, h):
        # The SDK's client sends an absolute URL as the request target, unipay a path.
        split = urllib.parse.urlsplit(h.path)
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if split.path != "/gateway.do":
            h.send_error(404)
            return
        # The SDKs put protocol parameters in the query and biz_content in the form body; unipay
        # puts them all in the body. Merge both, form-decoded (`+` is a space), as Alipay does
        # before it verifies.
        query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        form = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        params = {}
        for k, v in query + form:
            params[k] = v
        content = get_sign_content(without(params, "sign"))
        record = {
            "params": params,
            "query_keys": [k for k, _ in query],
            "form_keys": [k for k, _ in form],
            "duplicates": len(params) != len(query) + len(form),
            "content": content,
            "sign_ok": sdk_verify(APP_PUBLIC, content, params.get("sign", "")),
        }
        method = params.get("method", "")
        if not record["sign_ok"]:
            fields = {"code": "40002", "msg": "Invalid Arguments",
                      "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}
            reply = self.signed_reply(method, fields)
        elif method == "alipay.trade.precreate":
            reply = self.precreate(params)
        elif method == "alipay.trade.query":
            biz = json.loads(params.get("biz_content") or "{}")
            fields = self.trades.get(biz.get("out_trade_no"))
            if fields is None:
                fields = {"code": "40004", "msg": "Business Failed",
                          "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
            reply = self.signed_reply(method, fields)
        else:
            fields = {"code": "40004", "msg": "Business Failed",
                      "sub_code": "ACQ.TRADE_NOT_EXIST", "sub_msg": "交易不存在"}
            reply = self.signed_reply(method, fields)
        with self.lock:
            record["reply"] = reply
            self.requests.append(record)
        h.send_response(200)
        h.send_header("Content-Type", "text/html;charset=utf-8")
        h.send_header("Content-Length", str(len(reply)))
        h.end_headers()
        h.wfile.write(reply)

    def precreate(self, params):
        biz = json.loads(params["biz_content"])
        with self.lock:
            self.counter += 1
            qr = "https://qr.alipay.com/bax%05d" % self.counter
        fields = {"code": "10000", "msg": "Success", "out_trade_no": biz.get("out_trade_no"),
                  "qr_code": qr}
        tamper = None
        if self.precreate_mode == "tampered":
            # Signed over one QR code, sent with another (in the escaped text as sent).
            signed_qr = qr.replace("/", "\\/")
            tamper = lambda inner: inner.replace(signed_qr, signed_qr + "9")  # noqa: E731
        return self.signed_reply(params["method"], fields, tamper)

    @staticmethod
    def signed_reply(method, fields, tamper=None):
        """`{"<node>":<inner>,"sign":"…"}` with the SDK's signature over the inner text as
        sent: compact JSON, raw UTF-8, and `/` escaped as `\\/` as Alipay writes it."""
        node = (method or "error").replace(".", "_") + "_response"
        inner = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
        sign = sign_with_rsa2(GATEWAY_PRIVATE, inner, "utf-8")
        if tamper:
            inner = tamper(inner)
        return ('{"%s":%s,"sign":"%s"}' % (node, inner, sign)).encode("utf-8")

    def count(self):
        with self.lock:
            return len(self.requests)

    def last(self, method, since=0):
        """The last request for `method` among those received after the first `since`."""
        with self.lock:
            for r in reversed(self.requests[since:]):
                if r["params"].get("method") == method:
                    return r
        return None


# ---------------------------------------------------------------------------------------------
# unipay: a server on a temporary database, driven with `unipay call`.
# ---------------------------------------------------------------------------------------------


class Unipay:
    def __init__(self, binary, workdir, gateway_url):
        self.bin = binary
        self.db = str(Path(workdir) / "unipay.db")
        self.run("app", "create", "--db", self.db, "--mch-no", MCH_NO, "--app-id", APP_ID,
                 "--secret", SECRET, "--req-timeout", "0")
        self.run("channel", "set", "--db", self.db, "--app-id", APP_ID, "ali_pay",
                 "--alipay-app-id", ALIPAY_APP_ID,
                 "--private-key-file", str(KEYS / "app-private-key.pem"),
                 "--alipay-public-key-file", str(KEYS / "gateway-public-key.pem"),
                 "--gateway", gateway_url)
        self.stderr_path = Path(workdir) / "serve.stderr"
        self.stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [self.bin, "serve", "--db", self.db, "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.stderr)
        first = self.proc.stdout.readline().decode().strip()
        if not first.startswith("listening on "):
            raise RuntimeError("unipay serve did not start: %r; stderr:\n%s"
                               % (first, self.stderr_path.read_text()))
        # The public URL defaults to the listening address.
        self.url = first[len("listening on "):]
        # Keep reading stdout so that the server never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def run(self, *args):
        out = subprocess.run([self.bin, *args], capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("unipay %s: exit %d\n%s%s"
                               % (" ".join(args[:2]), out.returncode, out.stdout, out.stderr))
        return out.stdout

    def call(self, endpoint, body):
        """`unipay call` (it signs the request with the app's secret): the reply's JSON."""
        out = self.run("call", "--db", self.db, "--app-id", APP_ID, "--url", self.url,
                       endpoint, json.dumps(body, ensure_ascii=False))
        return json.loads(out)

    def pay(self, biz_order_no, method="qrcode", title="t", amount="0.01"):
        return self.call("pay", {"bizOrderNo": biz_order_no, "title": title, "amount": amount,
                                 "channel": "ali_pay", "method": method})

    def order(self, biz_order_no):
        reply = self.call("query", {"bizOrderNo": biz_order_no})
        if reply.get("code") != 0:
            raise RuntimeError("query %s: %s" % (biz_order_no, reply))
        return reply["data"]

    def notify_url(self):
        return "%s/callback/ali_pay/%s" % (self.url, APP_ID)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.stderr.close()


def post_form(url, params):
    """POSTs a form as Alipay does (quote_plus encoding); returns (HTTP status, body text)."""
    data = urllib.parse.urlencode(params).encode("utf-8")
    req = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def notification(order_no, amount, app_id=ALIPAY_APP_ID, trade_no="2024010122001400000000000001"):
    """A TRADE_SUCCESS notification with the fields Alipay sends, signed with the SDK by the
    V1 rule: `sign` and `sign_type` left out, sorted, `k=v` joined with `&`, RSA2 with
    Alipay's (here the fake gateway's) key."""
    params = {
        "notify_time": "2024-01-01 12:00:05",
        "notify_type": "trade_status_sync",
        "notify_id": "2024010100222120005000000000000001",
        "app_id": app_id,
        "auth_app_id": app_id,
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": trade_no,
        "out_trade_no": order_no,
        "buyer_id": "2088102534368455",
        "buyer_logon_id": "xud***@126.com",
        "seller_id": "2088531891668739",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": amount,
        "receipt_amount": amount,
        "invoice_amount": amount,
        "buyer_pay_amount": amount,
        "point_amount": "0.00",
        "subject": "咖啡 x1",
        "gmt_create": "2024-01-01 12:00:00",
        "gmt_payment": "2024-01-01 12:00:04",
        "fund_bill_list": '[{"amount":"%s","fundChannel":"ALIPAYACCOUNT"}]' % amount,
    }
    content = get_sign_content(without(params, "sign", "sign_type"))
    params["sign"] = sign_with_rsa2(GATEWAY_PRIVATE, content, "utf-8")
    return params


def sdk_client(gateway_url):
    """The SDK's own client, pointed at the fake gateway."""
    config = AlipayClientConfig()
    config.server_url = gateway_url
    config.app_id = ALIPAY_APP_ID
    config.app_private_key = APP_PRIVATE
    config.alipay_public_key = GATEWAY_PUBLIC
    return DefaultAlipayClient(alipay_client_config=config)


def get_http_connection(url, query_string, timeout):
    """Replaces WebUtils.get_http_connection, which connects to port 80 and then appends the
    parsed port (an int) to a str, so the SDK cannot reach a non-default port (channels.md E2).
    Returns the full URL and a connection to the URL's own host and port."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    return "%s://%s%s?%s" % (parts.scheme, parts.netloc, parts.path, query_string), connection


WebUtils.get_http_connection = get_http_connection


def sdk_parse(client, raw):
    """The SDK's private parser over a raw reply: the node's text, or ResponseException."""
    THREAD_LOCAL.logger = None
    THREAD_LOCAL.uuid = "alipay-check"
    return client._DefaultAlipayClient__parse_response(raw)


# ---------------------------------------------------------------------------------------------
# The checks. Each returns a short detail for its `ok` line or raises AssertionError.
# ---------------------------------------------------------------------------------------------


class Checks:
    ORDER = ["a_precreate_request_signature", "b_signed_reply_accepted",
             "c_tampered_reply_refused", "d_wap_url_verifies", "e_notification_applied",
             "f_bad_notifications_refused", "g_sdk_accepts_fake_replies"]

    def __init__(self, unipay, fake):
        self.u = unipay
        self.fake = fake
        self.precreate_good = None  # the reply bytes unipay accepted in (b)
        self.precreate_tampered = None  # the reply bytes unipay refused in (c)

    def precreate(self, biz_order_no, title="t"):
        """A qrcode pay: unipay's reply and the precreate request it sent the fake."""
        before = self.fake.count()
        reply = self.u.pay(biz_order_no, title=title)
        req = self.fake.last("alipay.trade.precreate", since=before)
        assert req is not None, "no precreate request reached the fake gateway (%s)" % reply
        return reply, req

    def a_precreate_request_signature(self):
        reply, req = self.precreate("A1", title=TITLE)
        params = req["params"]
        assert not req["duplicates"], "a parameter was sent twice"
        # unipay sends every parameter in the form body (the gateway merges query and body), so
        # that no URL, which HTTP libraries log, carries the signature.
        assert "sign" in req["form_keys"] and "biz_content" in req["form_keys"], (
            "form body: %s" % req["form_keys"])
        assert "sign" not in req["query_keys"], "the URL carries the signature"
        assert all(v != "" for v in params.values()), "an empty parameter was sent"
        assert req["sign_ok"], "verify_with_rsa refused unipay's sign over:\n  %s" % req["content"]
        sdk_sign = sign_with_rsa2(APP_PRIVATE, req["content"], "utf-8")
        assert sdk_sign == params["sign"], "sign differs:\n  unipay %s\n  sdk    %s" % (
            params["sign"], sdk_sign)
        biz = json.loads(params["biz_content"])
        assert biz.get("subject") == TITLE, biz
        assert params.get("notify_url") == self.u.notify_url(), params.get("notify_url")
        # Alipay reads `timestamp` in UTC+8 whatever the host's zone (channels.md A1).
        sent = datetime.datetime.strptime(params["timestamp"], "%Y-%m-%d %H:%M:%S")
        utc_now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        cst_now = utc_now + datetime.timedelta(hours=8)
        assert abs((sent - cst_now).total_seconds()) < 300, "timestamp %s is not UTC+8 now" % sent
        return "%d parameters, %s" % (len(params), ",".join(sorted(without(params, "sign"))))

    def b_signed_reply_accepted(self):
        self.fake.precreate_mode = "good"
        reply, req = self.precreate("B1")
        self.precreate_good = req["reply"]
        node = json.loads(req["reply"])["alipay_trade_precreate_response"]
        assert node.get("code") == "10000", "the fake answered %s" % node
        assert b"\\/" in req["reply"], "the fake's reply has no \\/ escape"
        qr = node["qr_code"]
        assert reply.get("code") == 0, "pay reply: %s" % reply
        assert reply["data"].get("payBody") == qr, "payBody %r, qr_code %r" % (
            reply["data"].get("payBody"), qr)
        status = self.u.order("B1")["status"]
        assert status == "progress", "order is %s" % status
        return "payBody %s, order progress" % qr

    def c_tampered_reply_refused(self):
        self.fake.precreate_mode = "tampered"
        try:
            reply, req = self.precreate("C1")
        finally:
            self.fake.precreate_mode = "good"
        self.precreate_tampered = req["reply"]
        assert reply.get("code") != 0, "a tampered reply was accepted: %s" % reply
        assert reply.get("code") == 20080, "pay reply: %s" % reply
        status = self.u.order("C1")["status"]
        assert status == "fail", "order is %s" % status
        return "code %s (%s), order fail" % (reply.get("code"), reply.get("msg"))

    def d_wap_url_verifies(self):
        before = self.fake.count()
        reply = self.u.pay("D1", method="wap", title=TITLE)
        assert reply.get("code") == 0, "pay reply: %s" % reply
        url = reply["data"]["payBody"]
        assert self.fake.count() == before, "a wap pay called the gateway"
        base, _, query = url.partition("?")
        assert base == self.fake.url, "URL %s is not the gateway's" % base
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        params = dict(pairs)
        assert len(params) == len(pairs), "a parameter was sent twice"
        assert params.get("method") == "alipay.trade.wap.pay", params.get("method")
        content = get_sign_content(without(params, "sign"))
        assert sdk_verify(APP_PUBLIC, content, params["sign"]), \
            "verify_with_rsa refused:\n  %s" % content
        assert sign_with_rsa2(APP_PRIVATE, content, "utf-8") == params["sign"], "sign differs"
        biz = json.loads(params["biz_content"])
        assert biz.get("product_code") == "QUICK_WAP_WAY", biz
        return "GET %s?… (%d parameters)" % (base, len(params))

    # (e) and (f) pay by wap, which makes no gateway call: the notification checks then do not
    # depend on the precreate path of (a)-(c).
    def e_notification_applied(self):
        reply = self.u.pay("E1", method="wap")
        assert reply.get("code") == 0, "pay reply: %s" % reply
        order_no = reply["data"]["orderNo"]
        notice = notification(order_no, "0.01")
        status, body = post_form(self.u.notify_url(), notice)
        assert body == "success", "HTTP %d, body %r" % (status, body)
        order = self.u.order("E1")
        assert order["status"] == "success", "order is %s" % order["status"]
        # Alipay retries a notice (same notify_id) until it reads `success`: a retry of one
        # already applied must get `success` again.
        status, body = post_form(self.u.notify_url(), notice)
        assert body == "success", "the retried notice: HTTP %d, body %r" % (status, body)
        # Alipay's trade as the fake now knows it, for the SDK's query in (g).
        self.fake.trades[order_no] = {
            "code": "10000", "msg": "Success", "trade_no": "2024010122001400000000000001",
            "out_trade_no": order_no, "buyer_logon_id": "xud***@126.com",
            "trade_status": "TRADE_SUCCESS", "total_amount": "0.01",
            "send_pay_date": "2024-01-01 12:00:04", "buyer_user_id": "2088102534368455"}
        self.paid_order_no = order_no
        return "body 'success', order %s success, a retry answered 'success' too" % order_no

    def f_bad_notifications_refused(self):
        reply = self.u.pay("F1", method="wap")
        assert reply.get("code") == 0, "pay reply: %s" % reply
        order_no = reply["data"]["orderNo"]
        amount_changed = notification(order_no, "0.01")
        amount_changed["total_amount"] = "100.00"
        trade_changed = notification(order_no, "0.01")
        trade_changed["trade_no"] = "2024010122001400000000000999"
        other_app = notification(order_no, "0.01", app_id=OTHER_ALIPAY_APP_ID)
        assert sdk_verify(GATEWAY_PUBLIC, get_sign_content(without(other_app, "sign", "sign_type")),
                          other_app["sign"]), "the other app's notice should verify"
        results = []
        for name, params in [("total_amount changed", amount_changed),
                             ("trade_no changed", trade_changed),
                             ("another app_id", other_app)]:
            status, body = post_form(self.u.notify_url(), params)
            assert body != "success", "%s: accepted (HTTP %d)" % (name, status)
            order = self.u.order("F1")
            assert order["status"] == "progress", "%s: order is now %s" % (name, order["status"])
            results.append("%s → %d %r" % (name, status, body))
        return "; ".join(results) + "; order still progress"

    def g_sdk_accepts_fake_replies(self):
        client = sdk_client(self.fake.url)
        # The SDK's whole client: it signs a request (the fake verifies it with the SDK), the
        # fake answers, the SDK verifies the answer with the gateway's public key.
        notes = []
        paid = getattr(self, "paid_order_no", None)
        queries = [(paid, "TRADE_SUCCESS"), ("NO-SUCH-TRADE", "ACQ.TRADE_NOT_EXIST")]
        for out_trade_no, want in queries:
            if out_trade_no is None:
                raise AssertionError("no paid order from (e) to query")
            model = AlipayTradeQueryModel()
            model.out_trade_no = out_trade_no
            before = self.fake.count()
            text = client.execute(AlipayTradeQueryRequest(biz_model=model))
            assert self.fake.last("alipay.trade.query", since=before)["sign_ok"], \
                "the fake refused the SDK's own request"
            response = AlipayTradeQueryResponse()
            response.parse_response_content(text)
            got = response.trade_status if response.is_success() else response.sub_code
            assert got == want, "query %s: %s" % (out_trade_no, text)
            notes.append("query %s" % got)
        # The SDK's parser alone, on the very bytes unipay got in (b) and (c).
        if self.precreate_good is None or self.precreate_tampered is None:
            raise AssertionError("(b) and (c) did not record their replies")
        try:
            node = json.loads(sdk_parse(client, self.precreate_good))
        except ResponseException as e:
            raise AssertionError("the SDK refused the precreate reply of (b): %s" % e)
        assert node.get("code") == "10000", node
        notes.append("precreate reply of (b) verifies")
        try:
            sdk_parse(client, self.precreate_tampered)
        except ResponseException:
            notes.append("the tampered one of (c) does not")
        else:
            raise AssertionError("the SDK accepted the tampered reply of (c)")
        return ", ".join(notes)


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
    fake = FakeAlipay()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="alipay-check-") as workdir:
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
    print("alipay_sdk: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
