"""The baseline of the gateway stage: a plain Python `websockets` broadcast server, the stack
of the system cartflow replaces. Prints `PORT n`, waits for a line on stdin, then broadcasts a
timestamped message to every client ten times a second until it is killed."""

import asyncio
import json
import sys
import time

import websockets


async def main() -> None:
    clients = set()

    async def handler(ws):
        clients.add(ws)
        try:
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    async with websockets.serve(handler, "127.0.0.1", 0, max_size=4096, ping_interval=60) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        while True:
            message = json.dumps({"type": "feed", "t": time.time_ns() // 1000, "pad": "x" * 200})
            websockets.broadcast(clients, message)
            await asyncio.sleep(0.1)


asyncio.run(main())
