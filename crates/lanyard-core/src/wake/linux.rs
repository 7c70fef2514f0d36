//! Linux: a `timerfd` armed far in the future with `TFD_TIMER_CANCEL_ON_SET` (its read fails with
//! `ECANCELED` whenever the realtime clock is set), and logind's `PrepareForSleep(false)` signal on
//! the system bus (the machine resumed). Without a system bus (containers, minimal systems) it says
//! so once and the engine relies on its timers. Owns the two listeners only.

use std::os::fd::OwnedFd;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::Notice;

pub(super) fn spawn(tx: watch::Sender<Notice>) {
    match clock_set_timer() {
        Ok(fd) => {
            let tx = tx.clone();
            tokio::spawn(async move { watch_clock_set(fd, tx).await });
        }
        Err(e) => warn!(error = %e, "cannot watch for wall-clock changes (timerfd)"),
    }
    tokio::spawn(async move { watch_resume(tx).await });
}

/// A realtime timerfd that fires in the year ~2286, cancelled by any clock set.
fn clock_set_timer() -> std::io::Result<AsyncFd<OwnedFd>> {
    let fd = timerfd_create(
        TimerfdClockId::Realtime,
        TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
    )?;
    arm(&fd)?;
    // `new` is deprecated because a borrowed raw fd could be closed behind the reactor's back; an
    // `OwnedFd` moved in here cannot be, and the safe alternative (`register`) is `unsafe`.
    #[allow(deprecated)]
    AsyncFd::new(fd)
}

fn arm(fd: &OwnedFd) -> std::io::Result<()> {
    let far = Itimerspec {
        it_interval: Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: Timespec {
            tv_sec: 9_999_999_999,
            tv_nsec: 0,
        },
    };
    timerfd_settime(
        fd,
        TimerfdTimerFlags::ABSTIME | TimerfdTimerFlags::CANCEL_ON_SET,
        &far,
    )?;
    Ok(())
}

async fn watch_clock_set(fd: AsyncFd<OwnedFd>, tx: watch::Sender<Notice>) {
    let mut buf = [0u8; 8];
    loop {
        let ready = tokio::select! {
            r = fd.readable() => r,
            _ = tx.closed() => return,
        };
        let Ok(mut guard) = ready else { return };
        match rustix::io::read(fd.get_ref(), &mut buf) {
            Err(rustix::io::Errno::CANCELED) => {
                debug!("the wall clock was set");
                tx.send_replace(Notice::ClockChanged);
                if let Err(e) = arm(fd.get_ref()) {
                    warn!(error = %e, "cannot re-arm the clock-change timer");
                    return;
                }
            }
            Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
            // The far-future expiry itself (never in practice): re-arm.
            Ok(_) => {
                let _ = arm(fd.get_ref());
            }
            Err(e) => {
                warn!(error = %e, "the clock-change timer failed");
                return;
            }
        }
    }
}

async fn watch_resume(tx: watch::Sender<Notice>) {
    let mut signals = match prepare_for_sleep().await {
        Ok(s) => s,
        Err(e) => {
            info!(
                reason = %e,
                "no logind on a system bus: a resume from sleep is noticed by the timers only"
            );
            return;
        }
    };
    use futures::StreamExt;
    loop {
        let message = tokio::select! {
            m = signals.next() => m,
            _ = tx.closed() => return,
        };
        let Some(message) = message else {
            info!("logind went away: a resume from sleep is noticed by the timers only");
            return;
        };
        // `PrepareForSleep(true)` comes before sleeping, `(false)` after waking.
        if let Ok(false) = message.body().deserialize::<bool>() {
            debug!("resumed from sleep");
            tx.send_replace(Notice::Resumed);
        }
    }
}

async fn prepare_for_sleep() -> zbus::Result<zbus::proxy::SignalStream<'static>> {
    let bus = zbus::Connection::system().await?;
    let manager = zbus::Proxy::new_owned(
        bus,
        "org.freedesktop.login1",
        "/org/freedesktop/login1",
        "org.freedesktop.login1.Manager",
    )
    .await?;
    manager.receive_signal("PrepareForSleep").await
}
