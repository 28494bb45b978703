git init -q demo && cd demo && git config user.email a@b.c && git config user.name demo
echo hi > f && git add f && git commit -qm first && git log --oneline
