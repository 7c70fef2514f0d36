"""A scripted `$BROWSER` for the interop suite: signs in through the peers' real forms.

    browser.py --user USER URL

Lanyard's agent runs `$BROWSER <authorization URL>`. This script does what a person would: GET the
URL, fill in the form each page shows (an authorization server's consent page: its first button,
"Allow"; the IdP's login form: user name + password; then the IdP's consent form), submit it, and
follow the redirects until the browser lands on Lanyard's loopback callback, which it loads. Plain
HTTP with a cookie jar, standard library only. It knows nothing about the peers beyond "pages have
one form, and its first button is the one to press"; the field names it fills are the usual
`login`/`password`. Each run starts with the line `browser: open <URL without query>` on stderr
(the agent's log: the suite counts how often a browser opened).

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
        self.button = None  # the first submit button: what a person presses
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
        elif tag == "button" and self.in_form and self.button is None:
            if attrs.get("type", "submit") == "submit":
                self.button = attrs

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
    log(f"open {bare(url)}")
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    request = urllib.request.Request(url)
    for step in range(8):
        with opener.open(request, timeout=20) as response:
            final = response.geturl()
            body = response.read().decode("utf-8", "replace")
        log(f"step {step}: {bare(final)}")
        # Lanyard's loopback redirect is exactly /callback (fastmcp's own is /auth/callback).
        if urllib.parse.urlsplit(final).path == "/callback":
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
        # A named button sends its own name=value (fastmcp's consent: action=approve).
        if form.button and form.button.get("name"):
            data[form.button["name"]] = form.button.get("value", "")
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
