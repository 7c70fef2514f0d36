"""A scripted `$BROWSER` for the interop suite: signs in through the IdP's real login form.

    browser.py --user USER URL

Lanyard's agent runs `$BROWSER <authorization URL>`. This script does what a person would: GET the
URL, fill in the form the IdP shows (the login form: user name + password; then the consent form),
submit it, and follow the redirects until the IdP sends the browser to Lanyard's loopback callback,
which it loads. Plain HTTP with a cookie jar, standard library only. It knows nothing about the IdP
beyond "pages have one form"; the field names it fills are the usual `login`/`password`.

It owns the scripted person and must not take any shortcut around the form (no direct API calls).
Each step is logged to stderr (URLs without their query, so no code or state is printed).
"""

import html.parser
import http.cookiejar
import sys
import urllib.parse
import urllib.request


class Form(html.parser.HTMLParser):
    """The first <form> of a page: its action, method and input fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.method = "get"
        self.fields = []
        self.in_form = False
        self.done = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and not self.done and self.action is None:
            self.in_form = True
            self.action = attrs.get("action", "")
            self.method = attrs.get("method", "get").lower()
        elif tag == "input" and self.in_form:
            self.fields.append(attrs)

    def handle_endtag(self, tag):
        if tag == "form" and self.in_form:
            self.in_form = False
            self.done = True


def log(message):
    print(f"browser: {message}", file=sys.stderr, flush=True)


def bare(url):
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def main(argv):
    if len(argv) != 4 or argv[1] != "--user":
        print(__doc__, file=sys.stderr)
        return 2
    user, url = argv[2], argv[3]
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    request = urllib.request.Request(url)
    for step in range(8):
        with opener.open(request, timeout=20) as response:
            final = response.geturl()
            body = response.read().decode("utf-8", "replace")
        log(f"step {step}: {bare(final)}")
        if urllib.parse.urlsplit(final).path.endswith("/callback"):
            return 0
        form = Form()
        form.feed(body)
        if form.action is None:
            log(f"no form on {bare(final)}: {body[:300]!r}")
            return 1
        data = {}
        for field in form.fields:
            name, kind = field.get("name"), field.get("type", "text")
            if not name:
                continue
            if kind == "password":
                data[name] = "interop-password"
            elif kind in ("text", "email") and name in ("login", "username", "email"):
                data[name] = user
            else:
                data[name] = field.get("value", "")
        target = urllib.parse.urljoin(final, form.action)
        encoded = urllib.parse.urlencode(data).encode()
        log(f"submit {sorted(data)} to {bare(target)}")
        request = urllib.request.Request(target, data=encoded, method="POST")
    log("no callback after 8 pages")
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except Exception as e:  # the agent logs our exit status; say why here
        log(f"{type(e).__name__}: {e}")
        sys.exit(1)
