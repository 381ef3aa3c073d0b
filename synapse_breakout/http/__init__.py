"""The first way in: HTTP. The admin API (admin_api.py, with authentication in
access.py, request decoding in decoding.py and start_request.py, ``/flags`` in
flags.py) and the host console (console/: its page, sessions and view).
"""
