"""Browser websockets on the real ASGI server: job progress, membership checked on connect."""
import asyncio
import json

import pytest
import websockets

pytestmark = pytest.mark.slow


def _session_cookie(client, user):
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def _recv_json(ws, timeout=10):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def test_a_member_watches_a_job_and_an_outsider_is_refused(asgi_server, users, project, client):
    from django.test import Client

    from projects.models import Job
    from workers import progress

    job = Job.objects.create(project=project, kind="train", created_by=users["bob"])
    url = asgi_server.url.replace("http", "ws") + f"/ws/jobs/{job.id}"
    bob_cookie = _session_cookie(Client(), users["bob"])
    charlie_cookie = _session_cookie(Client(), users["charlie"])

    async def scenario():
        async with websockets.connect(url, additional_headers={"Cookie": bob_cookie}) as ws:
            first = await _recv_json(ws)
            assert first["type"] == "state" and first["job"]["status"] == "queued"
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: progress.report(job.id, 0.5, "epoch 5/10", metrics={"loss": 0.3}))
            event = await _recv_json(ws)
            assert event == {"type": "progress", "progress": 0.5, "message": "epoch 5/10", "log": "epoch 5/10",
                             "metrics": {"loss": 0.3}}
        async with websockets.connect(url, additional_headers={"Cookie": charlie_cookie}) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4404
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4401

    asyncio.run(scenario())
    job.refresh_from_db()
    assert job.progress == 0.5 and "epoch 5/10" in job.log
