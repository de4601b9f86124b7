// Wharf's portal: the little script it needs. Pages are rendered on the server; this sends the
// forms that change something to Harbor's API (/api/v2.0) as JSON with the session's CSRF
// token, signs in and out, copies pull commands and refreshes pages that watch running work.
"use strict";

(() => {
  const FLASH_KEY = "wharf-flash";
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  const signInUrl = () =>
    "/harbor/sign-in?next=" + encodeURIComponent(location.pathname + location.search);

  // A local path only: `next` must not send anyone to another site.
  const safeNext = (value) =>
    value && value.startsWith("/") && !value.startsWith("//") && !value.startsWith("/\\") ? value : "/harbor/projects";

  function getPath(object, path) {
    return path.split(".").reduce((value, key) => (value == null ? undefined : value[key]), object);
  }

  // A key of digits is an array index: `filters.0.value` makes `{filters: [{value}]}`.
  function setPath(object, path, value) {
    const keys = path.split(".");
    let target = object;
    keys.slice(0, -1).forEach((key, i) => {
      target = target[key] ??= /^\d+$/.test(keys[i + 1]) ? [] : {};
    });
    target[keys[keys.length - 1]] = value;
  }

  // Field names are JSON paths (`metadata.public`, `filters.0.type`); `data-type` says what the
  // value becomes: int, bool (a checkbox as true/false), string-bool (as "true"/"false", Harbor's
  // metadata), list (comma-separated), optional (left out when empty), json (the value is JSON:
  // an option that stands for a nested object, e.g. `{"dest_registry": {"id": 3}}`). A json
  // field with `data-spread` has its object's keys merged into the body instead of set at its
  // name: one choice that sets several fields (a policy's direction and peer registry).
  function formBody(form) {
    const body = {};
    for (const element of form.elements) {
      if (!element.name || element.disabled || element.dataset.local !== undefined) continue;
      const type = element.dataset.type || "";
      let value;
      if (element.type === "checkbox") {
        value = type === "string-bool" ? String(element.checked) : element.checked;
      } else if (element.type === "radio") {
        if (!element.checked) continue;
        value = element.value;
      } else {
        value = element.value;
        if ((type === "optional" || type === "int") && value === "") continue;
        if (type === "int") value = Number.parseInt(value, 10);
        if (type === "bool") value = value === "true";
        if (type === "list") value = value.split(",").map((item) => item.trim()).filter(Boolean);
        if (type === "json") value = JSON.parse(value);
      }
      if (type === "json" && element.dataset.spread !== undefined) {
        Object.assign(body, value);
        continue;
      }
      setPath(body, element.name, value);
    }
    return body;
  }

  async function errorText(response) {
    try {
      const answer = await response.json();
      const messages = (answer.errors || []).map((error) => error.message).filter(Boolean);
      if (messages.length) return messages.join("; ");
    } catch (_) {
      // not JSON: the status says enough
    }
    return `${response.status} ${response.statusText || "error"}`;
  }

  function showError(form, message) {
    const slot = form.querySelector(".form-error");
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
    } else {
      window.alert(message);
    }
  }

  function flash(message) {
    const region = document.getElementById("flash");
    if (region) region.textContent = message;
  }

  async function submitApiForm(form) {
    const mismatch = localMismatch(form);
    if (mismatch) {
      showError(form, mismatch);
      return;
    }
    if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
    const method = (form.dataset.method || "POST").toUpperCase();
    const headers = { "X-Harbor-CSRF-Token": csrf() };
    const body = formBody(form);
    const init = { method, headers, credentials: "same-origin" };
    if (method !== "DELETE" && method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const url = form.dataset.api.replace(/\{([\w.]+)\}/g, (_, key) => encodeURIComponent(getPath(body, key) ?? ""));
    const buttons = form.querySelectorAll("button");
    buttons.forEach((button) => { button.disabled = true; });
    form.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(url, init);
      if (response.status === 401) {
        location.href = signInUrl();
        return;
      }
      if (!response.ok) {
        showError(form, await errorText(response));
        return;
      }
      sessionStorage.setItem(FLASH_KEY, form.dataset.done || "Done.");
      const then = form.dataset.then || "reload";
      if (then === "reload") {
        location.reload();
      } else {
        location.href = then.replace(/\{([\w.]+)\}/g, (_, key) => encodeURIComponent(getPath(body, key) ?? ""));
      }
    } catch (error) {
      showError(form, `The request did not reach Wharf: ${error.message}`);
    } finally {
      buttons.forEach((button) => { button.disabled = false; });
      form.removeAttribute("aria-busy");
    }
  }

  // -- confirm fields -------------------------------------------------------------------------
  // An input with `data-same-as="<id>"` (a "type it again" field, `data-local`: never sent) must
  // equal that input; the form is not sent otherwise and says `data-mismatch`.
  function localMismatch(form) {
    for (const input of form.querySelectorAll("[data-same-as]")) {
      const other = document.getElementById(input.dataset.sameAs);
      if (other && other.value !== input.value) {
        input.focus();
        return input.dataset.mismatch || "The two values differ.";
      }
    }
    return "";
  }

  async function signIn(form) {
    const slot = form.querySelector(".form-error");
    const response = await fetch("/c/login", {
      method: "POST",
      body: new URLSearchParams(new FormData(form)),
      credentials: "same-origin",
    });
    if (response.ok) {
      location.href = safeNext(form.dataset.next);
      return;
    }
    slot.textContent = response.status === 401
      ? "Wrong username or password."
      : response.status === 429
        ? "Too many failed attempts: wait a little and try again."
        : await errorText(response);
    slot.hidden = false;
    form.querySelector("#password")?.focus();
  }

  async function signOut() {
    const response = await fetch("/c/logout", { credentials: "same-origin" });
    // A single sign-on session: end the provider's session too (it comes back to the sign-in page).
    const body = response.headers.get("Content-Type")?.startsWith("application/json")
      ? await response.json().catch(() => ({}))
      : {};
    location.href = typeof body.redirect_url === "string" ? body.redirect_url : "/harbor/sign-in";
  }

  async function copy(button) {
    const text = button.dataset.copy;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard permission (plain HTTP): select the text so that Ctrl+C copies it.
      const area = document.createElement("textarea");
      area.value = text;
      document.body.append(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    flash(`Copied: ${text}`);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id === "sign-in") {
      event.preventDefault();
      signIn(form);
    } else if (form.dataset.api) {
      event.preventDefault();
      submitApiForm(form);
    }
  });

  document.addEventListener("click", (event) => {
    const target = event.target.closest("button");
    if (!target) return;
    if (target.dataset.copy !== undefined) copy(target);
    if (target.dataset.signOut !== undefined) signOut();
    if (target.dataset.menuToggle !== undefined) toggleMenu(target);
  });

  // A filter that applies on change (a select in a GET form).
  document.addEventListener("change", (event) => {
    if (event.target.dataset.autosubmit !== undefined) event.target.form.requestSubmit();
  });

  // On a phone the navigation folds behind a Menu button (the stylesheet shows the button only
  // once this class says the script runs).
  document.documentElement.classList.add("js");

  function toggleMenu(button) {
    const menu = document.getElementById(button.getAttribute("aria-controls"));
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    menu.classList.toggle("open", open);
    if (open) menu.querySelector("a, button")?.focus();
  }

  document.addEventListener("keydown", (event) => {
    const button = document.querySelector("[data-menu-toggle]");
    if (event.key === "Escape" && button?.getAttribute("aria-expanded") === "true") {
      toggleMenu(button);
      button.focus();
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    const message = sessionStorage.getItem(FLASH_KEY);
    if (message) {
      sessionStorage.removeItem(FLASH_KEY);
      flash(message);
    }
    // A page that watches running work (an execution) reloads itself while it runs.
    const watch = document.querySelector("[data-refresh]");
    if (watch) {
      const seconds = Number.parseFloat(watch.dataset.refresh) || 5;
      setTimeout(() => location.reload(), seconds * 1000);
    }
  });
})();
