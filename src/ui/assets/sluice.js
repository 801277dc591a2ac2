// Sluice dashboard: live updates. The pages are complete without this
// script; with it, a page fetches itself again whenever the server says
// the reconciler recorded something (server-sent events on /events) and
// swaps in the new <main>, so states, versions and ages stay current
// without a reload. What is fetched is the same page in the same scope.
(() => {
  "use strict";
  const main = document.getElementById("main");
  if (!main || !window.EventSource || !main.dataset.events) return;
  const live = document.getElementById("live");
  let busy = false;
  let again = false;

  // Someone typing into a form keeps it: the swap waits for the next event.
  const editing = () => {
    const active = document.activeElement;
    return active && main.contains(active) && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName);
  };

  async function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      const response = await fetch(location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.ok && !editing()) {
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("main");
        if (fresh) {
          main.innerHTML = fresh.innerHTML;
          main.dataset.refreshed = String(Date.now());
          if (live) live.textContent = " · updated " + new Date().toLocaleTimeString();
        }
      }
    } catch (_) {
      // The server restarted or the network blinked: the next event retries.
    } finally {
      busy = false;
    }
    if (again) {
      again = false;
      refresh();
    }
  }

  const events = new EventSource(main.dataset.events);
  events.addEventListener("changed", refresh);
  events.addEventListener("open", () => main.setAttribute("data-live", "on"));
  events.addEventListener("error", () => main.setAttribute("data-live", "off"));
})();
