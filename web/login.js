// The sign-in form: posts the user and password, goes to the search page once signed in.
document.getElementById("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = document.getElementById("status");
  status.textContent = "Signing in…";
  const body = JSON.stringify({ user: document.getElementById("user").value, password: document.getElementById("password").value });
  try {
    const response = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (response.ok) { location.replace("/"); return; }
    const json = await response.json().catch(() => ({}));
    status.textContent = json.error?.message || response.statusText;
  } catch (e) {
    status.textContent = `The server did not answer: ${e.message}`;
  }
});
