"""The dashboard (issue 15): server-rendered pages at /dashboard, in the paymux process.

Contract for page modules (H7's framework; H8's pages build on it; a change here is noted in
this docstring first):

- A page module is ``paymux.dashboard.pages_<name>`` exposing ``router`` (a FastAPI
  ``APIRouter``, paths relative to ``/dashboard``: ``"/payments"``, ``"/keys"``; the home
  page is ``pages_home`` at ``""``). ``app.PAGE_MODULES`` lists them; a missing one is
  skipped.
- Every route takes ``user: CurrentUser = Depends(require_role(*roles))`` (auth.py; role
  sets ``ANY``, ``MONEY``, ``DEVELOPERS``, ``ADMIN``). The dependency redirects to the login
  page without a session, answers 403 for another role, checks the CSRF token of every POST
  and sets the session's test/live mode for the services.
- Pages answer ``render(request, "dashboard/<page>.html", user=user, **values)``
  (render.py): templates extend ``dashboard/base.html`` and fill ``{% block title %}`` and
  ``{% block content %}``; forms include ``{{ csrf_field() }}`` (import it with
  ``{% from "dashboard/_macros.html" import csrf_field %}``). No inline script or style:
  scripts need ``nonce="{{ nonce }}"``; CSS goes in static/dashboard.css (or a static file
  of your own in dashboard/static/, served at /dashboard/static/<name>).
- An action: a POST form, then ``RedirectResponse(url, status_code=303)``; record it with
  ``audit.record_action(request, user, ...)`` (actions.py) unless the service audits it.
- ``nav.NAV`` lists the nav's entries (path, label, roles); a page appears there only when
  its module is present.
- Pages call services (``auth.core(request)`` is the Paymux), never the database directly.

Test files: H7's are tests/integration/test_dashboard_payments.py, tests/unit/test_dashboard_*.py
(filters, users) and tests/browser/test_dashboard_browser.py; H8's are
tests/integration/test_dashboard_pages.py and test_dashboard_reports.py.
"""
