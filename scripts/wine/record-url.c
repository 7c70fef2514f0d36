/* record-url.exe: the "browser" of the Wine end-to-end test. It opens nothing: it appends one line
 * holding its arguments (space-separated, UTF-8) to the file named by a first argument --log=PATH or
 * by %LANYARD_BROWSER_LOG%, where
 * the Linux side of the test picks the URL up (the last word) and completes the sign-in with the
 * testbed's scripted browser. A first word before the URL tells how it was started (the test
 * registers it as the http handler with `shell-open "%1"`; `$BROWSER=record-url` gives the URL only).
 *
 * A real Windows program rather than a .cmd: Wine's cmd.exe expands the `%` escapes Rust puts into
 * a batch file's arguments differently from Windows and mangles percent-encoded URLs. Test-only;
 * installed into the private Wine prefix by prefix.sh, never shipped. */
#include <windows.h>
#include <stdio.h>
#include <wchar.h>

int wmain(int argc, wchar_t **argv)
{
    /* The log comes from a first argument --log=PATH ($BROWSER: the agent starts browsers with an
     * allow-listed environment, which has no LANYARD_* variable), else from the environment (the
     * shell's http handler, which ShellExecute starts with the agent's own environment). */
    const wchar_t *log = NULL;
    if (argc >= 2 && wcsncmp(argv[1], L"--log=", 6) == 0) {
        log = argv[1] + 6;
        argv++;
        argc--;
    } else {
        log = _wgetenv(L"LANYARD_BROWSER_LOG");
    }
    if (!log || !*log) {
        fputs("record-url: no --log=PATH and LANYARD_BROWSER_LOG is not set\n", stderr);
        return 2;
    }
    if (argc < 2) {
        fputs("record-url: no URL given\n", stderr);
        return 2;
    }
    FILE *out = _wfopen(log, L"ab");
    if (!out) {
        fputs("record-url: cannot open LANYARD_BROWSER_LOG\n", stderr);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        char utf8[8192];
        int n = WideCharToMultiByte(CP_UTF8, 0, argv[i], -1, utf8, sizeof utf8, NULL, NULL);
        if (n <= 0) {
            fclose(out);
            fputs("record-url: argument too long\n", stderr);
            return 1;
        }
        fprintf(out, i + 1 < argc ? "%s " : "%s\n", utf8);
    }
    return fclose(out) == 0 ? 0 : 1;
}
