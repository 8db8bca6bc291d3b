#!/usr/bin/env bash
# Smoke test of the running compose stack (project qifusmoke): first admin, seed, log in, submit,
# the worker delivers, /metrics of api and worker.
set -euo pipefail
API=http://127.0.0.1:18090/api/v1
echo "== first administrator (qifu user create, inside the api container)"
echo "Smoke-admin-2026!" | docker exec -i qifusmoke_api_1 qifu user create smokeadmin --full-name 冒烟管理员 --password-stdin || echo "(already created by an earlier run)"
echo "== seed county (demo data) so an enterprise can submit"
docker exec qifusmoke_api_1 qifu seed --enterprises 20 | tail -1
tok() { curl -sf -X POST $API/auth/token -d "username=$1&password=$2" | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])'; }
ADM=$(tok smokeadmin 'Smoke-admin-2026!')
curl -sf $API/me -H "Authorization: Bearer $ADM" | python3 -c 'import sys,json;d=json.load(sys.stdin);print("me:",d["username"],d["role"])'
ENT=$(tok ent1 qifu-demo-2026)
echo "== submit"
curl -sf -X POST $API/tickets -H "Authorization: Bearer $ENT" -H 'Content-Type: application/json' -H "Idempotency-Key: smoke-$(date +%s)" \
  -d '{"title":"招工难","description":"急需焊工50名","category_code":"problem.labour"}' | python3 -c 'import sys,json;d=json.load(sys.stdin);print("ticket:",d["number"],d["status"])'
echo "== beat schedules, the worker runs (Celery on Redis): tasks succeeded so far"
sleep 35
docker logs qifusmoke_worker_1 2>&1 | grep -o 'Task [a-z_.]*\[[^]]*\] succeeded' | sed 's/\[.*\]//' | sort | uniq -c
docker exec qifusmoke_postgres_1 psql -U qifu -d qifu -Atc "select 'tickets', count(*) from ticket" -c "select 'notifications', count(*) from notification"
echo "== /metrics (api) and worker:9540/metrics"
curl -sf http://127.0.0.1:18090/metrics | grep -E '^qifu_tickets|^http_requests_total' | head -5
docker exec qifusmoke_worker_1 python -c "import urllib.request;print('\n'.join(l for l in urllib.request.urlopen('http://127.0.0.1:9540/metrics').read().decode().splitlines() if l.startswith('qifu_') or l.startswith('celery'))[:600])"
echo "== health"
docker inspect --format '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}' $(docker ps -aq --filter name=qifusmoke)
docker exec qifusmoke_api_1 id
