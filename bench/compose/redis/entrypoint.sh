#!/bin/sh
# as the official redis image does when no config file is given: reachable from the compose network
if [ "${1#-}" != "$1" ] || [ "$1" = "redis-server" ]; then
  [ "$1" = "redis-server" ] && shift
  set -- redis-server --protected-mode no "$@"
fi
exec "$@"
