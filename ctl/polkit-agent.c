/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* polkit's text agent for a privileged call, as systemctl and loginctl start it: a caller who is
 * not root, on a terminal, may then be asked for a password (auth_admin_keep) instead of being
 * refused. GLib's spawn does the fork; the agent closes its --notify-fd once it is registered. */
#include "gk-build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"

#define AGENT_PATH "/usr/bin/pkttyagent"
/* The agent registers with polkitd in well under a second; a polkitd that does not answer must
 * not hold the command forever: polkit then refuses, and says so. */
#define AGENT_WAIT_MS 10000

bool arg_ask_password = true;
static GPid agent_pid;

void polkit_agent_open(sd_bus *bus)
{
        g_autoptr(GError) error = NULL;
        int fds[2], target = 3;
        struct pollfd p;
        const char *path = AGENT_PATH;

        if (!arg_ask_password || geteuid() == 0 || !isatty(STDIN_FILENO) || agent_pid > 0)
                return;
        /* Interactive authorization is asked for even without an agent: polkit may have another
         * agent for this session (a desktop's). */
        (void) sd_bus_set_allow_interactive_authorization(bus, true);
        if (access(path, X_OK) < 0)
                return;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return;
        if (!g_spawn_async_with_pipes_and_fds(
                    NULL, (const char *const[]){path, "--notify-fd", "3", "--fallback", NULL}, NULL,
                    G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_CHILD_INHERITS_STDIN, NULL, NULL, -1, -1, -1,
                    &fds[1], &target, 1, &agent_pid, NULL, NULL, NULL, &error)) {
                fail("cannot start the polkit agent %s: %s", path, error->message);
                close(fds[0]);
                close(fds[1]);
                return;
        }
        close(fds[1]);
        /* Registered (or given up): the agent closed its end. */
        p = (struct pollfd){.fd = fds[0], .events = POLLIN};
        while (poll(&p, 1, AGENT_WAIT_MS) < 0 && errno == EINTR)
                ;
        close(fds[0]);
}

void polkit_agent_close(void)
{
        if (agent_pid <= 0)
                return;
        (void) kill(agent_pid, SIGTERM);
        while (waitpid(agent_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        g_spawn_close_pid(agent_pid);
        agent_pid = 0;
}
