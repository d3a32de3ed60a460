//! The `--help` texts of every command.

pub const HELP: &str = "\
unipay: a one-binary DaxPay-compatible payment gateway on SQLite

Usage: unipay <COMMAND> [OPTIONS]

Commands:
  serve         Run the gateway (the default when no command is given)
  app create    Create a merchant application (and its merchant)
  app list      List the applications
  call          Send a signed request to a running server and print the reply
  channel       Set, list or disable an app's payment channels (ali_pay, wechat_pay)
  order attention  List orders that need an operator
  refund list   List refunds (--status progress|success|close|fail)
  notify list   List merchant notifications (--pending, --failed)
  notify resend Deliver a notification again
  backup        Copy the database to a new file while the server runs
  healthcheck   Ask a running server whether it is healthy (exit 0 if so)
  version       Print the version

Run `unipay <COMMAND> --help` for the options of a command.
";

pub const SERVE_HELP: &str = "\
unipay serve: run the gateway

Usage: unipay serve [--db PATH] [--listen HOST:PORT] [--tz-offset +08:00]
                    [--notify-retry-schedule 15s,15s,30s,...] [--sweep-interval 60s]
                    [--admin-token TOKEN] [--public-url URL] [--channel-timeout 10s]
                    [--no-sandbox] [--admin-token-file FILE] [--max-conns-per-ip 256]
                    [--shutdown-grace 10s] [--metrics-public]
                    [--no-create]

Options:
  --db PATH            SQLite database file, created when missing (unless --no-create)
                       [env UNIPAY_DB, default ./unipay.db]
  --no-create          Refuse to start (exit code 2) when the database file is missing or empty
                       instead of creating a new one with a demo app: a volume that did not
                       mount is not a first start  [env UNIPAY_NO_CREATE=1]. Use it in production
  --listen HOST:PORT   Address to listen on; port 0 picks a free one  [env UNIPAY_LISTEN, default 127.0.0.1:9999]
  --tz-offset OFFSET   UTC offset that request times are read in  [env UNIPAY_TZ_OFFSET, default +08:00]
  --notify-retry-schedule LIST
                       Waits between notification attempts (ms, s, m, h)
                       [default 15s,15s,30s,3m,10m,20m,30m,30m,30m,60m,3h,3h,3h,6h,6h]
  --sweep-interval D   How often orders past their expiredTime are closed  [default 60s]
  --admin-token TOKEN  Token of the admin console at /admin (stored hashed; at least 16
                       characters)  [env UNIPAY_ADMIN_TOKEN, default: generated on the first
                       start and printed once]. A command line is visible in `ps`: prefer the
                       environment or --admin-token-file
  --admin-token-file FILE
                       The admin token from a file (one line)
  --public-url URL     Where the payment channels send notifications: Alipay and WeChat Pay call
                       {URL}/callback/{channel}/{appId}  [env UNIPAY_PUBLIC_URL, default
                       http:// and the address listened on]
  --channel-timeout D  Timeout of every call to a payment channel  [env UNIPAY_CHANNEL_TIMEOUT,
                       default 10s]
  --no-sandbox         Turn the sandbox channel off: its payer pages are 404 and a pay with
                       channel sandbox gets 20023  [env UNIPAY_NO_SANDBOX=1]. Use it in production
  --max-conns-per-ip N Most connections at once from one client IP address (at least 1); more
                       get HTTP 503  [env UNIPAY_MAX_CONNS_PER_IP, default 256]
  --shutdown-grace D   On SIGTERM or SIGINT, how long the requests, channel calls and
                       notification attempts under way may take to finish; past it the process
                       exits with status 1 (nothing acknowledged is lost)  [env
                       UNIPAY_SHUTDOWN_GRACE, default 10s]. A second signal exits at once
  --metrics-public     Serve GET /metrics without the admin token (Bearer)  [env
                       UNIPAY_METRICS_PUBLIC=1]
  -h, --help           Print this help

The first line on stdout is `listening on http://HOST:PORT`. On a brand-new database a demo
merchant and app are created and their credentials printed once. A database file that is
missing or empty while its -wal or -shm file is there is refused in any case (exit code 2):
restore the file, or move those aside. GET /healthz answers 200 while the database answers and
the writer commits, 503 (with the reason) otherwise.
";

pub const APP_HELP: &str = "\
unipay app: manage merchant applications

Usage:
  unipay app create --db PATH --mch-no M --app-id A [OPTIONS]
  unipay app list --db PATH

Options of `app create`:
  --sign-type TYPE        md5 | hmac_sha256 | sm3  [default md5]
  --secret S              Signing secret  [default: 32 random characters]
  --req-timeout SECONDS   Request-time window; 0 turns it off  [default 300]
  --no-req-sign           Accept requests without a signature
  --notify-url URL        Subscribe the app to pay events at this URL
  --order-timeout MINUTES Default order lifetime  [default 30]
  --limit-amount YUAN     Largest amount of one order
Both commands work while `unipay serve` runs on the same file.
";

pub const ORDER_HELP: &str = "\
unipay order: orders that need an operator

Usage: unipay order attention --db PATH [--tz-offset +08:00]

Lists, one JSON line each, the orders whose money arrived at the channel after unipay had
closed them. Such an order keeps its closed status; an operator must refund or reconcile it.
Times are printed in --tz-offset [env UNIPAY_TZ_OFFSET, default +08:00].
";

pub const BACKUP_HELP: &str = "\
unipay backup: copy the database to a new file, also while `unipay serve` runs

Usage: unipay backup --db PATH --out FILE

The copy is one consistent snapshot made with SQLite's online backup: every change committed
before the backup started is in it, the server keeps serving meanwhile, and the copy is checked
with `PRAGMA integrity_check` before it gets its name. FILE must not exist yet.
To restore: stop the server, put FILE in place of the database file, remove any `-wal` and
`-shm` files beside it, and start the server.
";

pub const HEALTHCHECK_HELP: &str = "\
unipay healthcheck: ask a running server whether it is healthy

Usage: unipay healthcheck [--url URL]

GETs URL (default http://127.0.0.1:9999/healthz) with a 5 s timeout and exits 0 when the answer
is HTTP 200, 1 otherwise, printing the answer's body (or why there is none) to stderr. For a
container's HEALTHCHECK or a supervisor, where there may be no shell and no curl.
";

pub const VERSION_HELP: &str = "\
unipay version: print the version

Usage: unipay version
";

pub const NOTIFY_HELP: &str = "\
unipay notify: merchant notifications (the outbox)

Usage:
  unipay notify list --db PATH [--pending | --failed] [--tz-offset +08:00]
  unipay notify resend --db PATH EVENT_ID

`list` prints one JSON line per event, newest first (at most 1000), its times in --tz-offset
[env UNIPAY_TZ_OFFSET, default +08:00]. `--failed` shows the events that were given up after
the last retry. `resend` makes an event due now with a fresh round of retries; it works while
`unipay serve` runs on the same file.
";

pub const CALL_HELP: &str = "\
unipay call: send a signed request to a running server and print the reply

Usage: unipay call --db PATH --app-id A [--url URL] [--tz-offset +08:00] ENDPOINT JSON

ENDPOINT is a path (/unipay/close) or a short name: pay, prePay, close, query, refund,
queryRefund, syncPay, syncRefund.
mchNo, appId and reqTime are filled in and the request is signed with the app's secret.
  --url URL   The server  [env UNIPAY_URL, default http://127.0.0.1:9999]

Example:
  unipay call --db unipay.db --app-id DEMO_APP close '{\"bizOrderNo\":\"B1\"}'
";

pub const CHANNEL_HELP: &str = "\
unipay channel: an app's real payment channels

Usage:
  unipay channel set --db PATH --app-id APP ali_pay --alipay-app-id ID
                     --private-key-file FILE --alipay-public-key-file FILE [--gateway URL]
  unipay channel set --db PATH --app-id APP wechat_pay --mchid MCHID --wx-appid WXAPPID
                     --serial-no SERIAL --private-key-file apiclient_key.pem
                     --apiv3-key-file FILE --platform-public-key-file FILE
                     --platform-public-key-id PUB_KEY_ID_… [--base-url URL]
  unipay channel list --db PATH [--app-id APP]
  unipay channel disable --db PATH --app-id APP CHANNEL

`set` stores (or replaces) the app's settings of a channel and enables it; the app must exist.
For ali_pay: the app's Alipay app id, the app's private key (PKCS#1 or PKCS#8, PEM or the bare
base64 Alipay's key tool writes) and Alipay's public key (PEM or bare base64); RSA keys under
2048 bits are refused. --gateway defaults to https://openapi.alipay.com/gateway.do (Alipay's
sandbox: https://openapi-sandbox.dl.alipaydev.com/gateway.do).
For wechat_pay (API v3, 直连商户): the merchant id, the WeChat app id, the merchant API
certificate's serial and its private key (apiclient_key.pem), a file with the APIv3 key (32
characters), and WeChat Pay's public key (or platform certificate) with its ID, which
Wechatpay-Serial carries; --base-url defaults to https://api.mch.weixin.qq.com.
Keys and the APIv3 key come from files, never from the command line (visible in `ps`).
`list` prints one JSON line per app and channel; it never prints a private key.
`disable` keeps the settings; pay requests for the channel then get 20021 until `set` again.
All three work while `unipay serve` runs on the same file.
";

pub const REFUND_HELP: &str = "\
unipay refund: refunds

Usage: unipay refund list --db PATH [--status progress|success|close|fail] [--tz-offset +08:00]

Prints one JSON line per refund, newest first (at most 1000), its times in --tz-offset
[env UNIPAY_TZ_OFFSET, default +08:00]. Refunds are made with POST /unipay/refund or in the
admin console; a `progress` refund is one whose outcome at the channel is not known yet (the
server asks the channel until it is).
";
