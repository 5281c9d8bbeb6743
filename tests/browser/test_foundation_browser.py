"""In headless Chromium: sign up, create a project, invite a second user who then sees it."""
import pytest

pytestmark = pytest.mark.slow


def signup(page, base, username, password="a-long-passphrase-42"):
    page.goto(f"{base}/signup")
    page.fill("input[name=username]", username)
    page.fill("input[name=email]", f"{username}@example.com")
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def test_sign_up_create_a_project_invite_and_the_invitee_sees_it(asgi_server, browser):
    base = asgi_server.url
    ctx_b = browser.new_context()
    pb = ctx_b.new_page()
    signup(pb, base, "bianca")

    ctx_a = browser.new_context()
    pa = ctx_a.new_page()
    signup(pa, base, "amir")
    pa.fill("#new-project input[name=name]", "Flower finder")
    pa.click("#new-project button[type=submit]")
    pa.wait_for_url("**/projects/*/")
    assert pa.locator("h1").inner_text() == "Flower finder"
    project_url = pa.url
    pa.click("nav >> text=Members")
    pa.fill("#invite input[name=user]", "bianca")
    pa.select_option("#invite select[name=role]", "viewer")
    pa.click("#invite button[type=submit]")
    pa.wait_for_selector("#members tr[data-user=bianca]")
    # An unknown user gets a clear message, not a crash.
    pa.fill("#invite input[name=user]", "nobody-here")
    pa.click("#invite button[type=submit]")
    assert "no user 'nobody-here'" in pa.locator(".messages").inner_text()

    pb.goto(f"{base}/")
    pb.click("text=Flower finder")
    pb.wait_for_url(project_url)
    assert "viewer" in pb.locator(".who").inner_text()
    assert "member.invited" in pb.locator("#activity").inner_text()
    ctx_a.close()
    ctx_b.close()
