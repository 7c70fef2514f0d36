"""A real MCP client (the official Python SDK, PyPI `mcp`) driving `lanyard proxy` over stdio.

Used by tests/tests/proxy_clients.rs. Usage:

    python_client.py LANYARD_BINARY SERVER_ID

The proxy inherits only the SDK's default environment plus XDG_RUNTIME_DIR and LANYARD_AGENT_SOCKET
(so it finds the test's agent). The script prints one JSON object per line on stdout:
{"event": "ready", "server": ..., "tools": [...]} after initialize and tools/list, then one
{"event": "result", "command": ..., "text": ..., "is_error": ...} per command it reads from stdin:
`whoami`, `echo TEXT`, or `quit`. Any failure is printed as {"event": "error", ...} and exits 1.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import get_default_environment, stdio_client


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def read_command():
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip() if line else "quit"


async def main(lanyard, server):
    env = get_default_environment()
    for name in ("XDG_RUNTIME_DIR", "LANYARD_AGENT_SOCKET", "LANYARD_LOG"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    params = StdioServerParameters(command=lanyard, args=["proxy", server], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            emit(
                event="ready",
                server=init.server_info.name,
                protocol=init.protocol_version,
                tools=[t.name for t in tools.tools],
            )
            while True:
                command = await read_command()
                if command == "quit":
                    break
                if command == "whoami":
                    result = await session.call_tool("whoami", {})
                elif command.startswith("echo "):
                    result = await session.call_tool("echo", {"text": command[5:]})
                else:
                    emit(event="error", message=f"unknown command {command!r}")
                    return 1
                text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                emit(event="result", command=command, text=text, is_error=bool(result.is_error))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2])))
    except Exception as e:  # report, do not hide: the test shows this line
        emit(event="error", message=f"{type(e).__name__}: {e}")
        sys.exit(1)
