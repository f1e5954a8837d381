"""Opens N Server-Sent Events streams through a proxy on 127.0.0.1 and holds them.

    python3 bench/sse_fanout.py PORT N READY_FILE

Each stream asks the demo backend for an event a second. Once every stream has received two
events, the number of streams that did is written to READY_FILE; the streams are then held
open until this process is killed, so that bench/run.sh can read the proxy's memory.
"""

import asyncio
import sys


async def stream(port: int, got_two: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /events?interval_ms=1000 HTTP/1.1\r\nHost: bench\r\n"
        b"Accept: text/event-stream\r\n\r\n"
    )
    await writer.drain()
    events = 0
    while events < 2:
        line = await reader.readline()
        if not line:
            return
        if line.startswith(b"data:"):
            events += 1
    got_two.set()
    while await reader.read(65536):
        pass


async def main(port: int, count: int, ready_file: str) -> None:
    flags = [asyncio.Event() for _ in range(count)]
    tasks = []
    for flag in flags:
        tasks.append(asyncio.create_task(stream(port, flag)))
        await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(asyncio.gather(*(f.wait() for f in flags)), timeout=60)
    except asyncio.TimeoutError:
        pass
    with open(ready_file, "w", encoding="ascii") as out:
        out.write(f"{sum(f.is_set() for f in flags)}\n")
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]))
