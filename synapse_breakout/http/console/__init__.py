"""The host console (docs/console.md): its web page (static/), console
sessions made from a widget's OpenID token (sessions.py) and what the page
shows its user (view.py), served by resource.py."""
