//! Windows FFI (`windows-sys`) behind safe functions: who is at the other end of a pipe, the pipe's
//! security descriptor, registry change notification and the shell's URL opener.
//!
//! This is the one module where `unsafe` is allowed. Each block has a `SAFETY:` comment; every
//! handle or buffer the OS gives back is owned by a value here that releases it on drop, so callers
//! never see a raw handle they must free. Nothing here decides policy: callers compare SIDs, log and
//! refuse.

use std::ffi::{c_void, OsStr};
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::thread::JoinHandle;

use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};
use windows_sys::Win32::Foundation::{
    LocalFree, ERROR_FILE_NOT_FOUND, ERROR_INSUFFICIENT_BUFFER, ERROR_SUCCESS, HANDLE, HLOCAL,
    WAIT_OBJECT_0,
};
use windows_sys::Win32::Security::Authorization::{
    ConvertSidToStringSidW, ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenUser, PSECURITY_DESCRIPTOR, SECURITY_ATTRIBUTES, TOKEN_QUERY,
    TOKEN_USER,
};
use windows_sys::Win32::System::Pipes::GetNamedPipeClientProcessId;
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegNotifyChangeKeyValue, RegOpenKeyExW, HKEY, HKEY_CURRENT_USER,
    HKEY_LOCAL_MACHINE, KEY_NOTIFY, REG_NOTIFY_CHANGE_LAST_SET, REG_NOTIFY_CHANGE_NAME,
};
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, OpenProcess, OpenProcessToken, QueryFullProcessImageNameW,
    SetEvent, WaitForMultipleObjects, INFINITE, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// Takes ownership of a handle the OS returned; null or INVALID_HANDLE_VALUE is the last error.
fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `handle` is a valid, open handle just returned to us by the OS and owned by no one
    // else; OwnedHandle closes it exactly once.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle) })
}

/// A wide string the OS allocated with LocalAlloc, freed on drop.
struct LocalWide(*mut u16);

impl LocalWide {
    fn to_string_lossy(&self) -> String {
        // SAFETY: the pointer came from ConvertSidToStringSidW, which returns a NUL-terminated
        // string; we read up to (not past) the terminator while we still own the buffer.
        unsafe {
            let mut len = 0;
            while *self.0.add(len) != 0 {
                len += 1;
            }
            String::from_utf16_lossy(std::slice::from_raw_parts(self.0, len))
        }
    }
}

impl Drop for LocalWide {
    fn drop(&mut self) {
        // SAFETY: the buffer was allocated by the OS with LocalAlloc for us and is freed once.
        unsafe {
            LocalFree(self.0 as HLOCAL);
        }
    }
}

/// The string SID of the user a token belongs to.
fn token_user_sid(token: &OwnedHandle) -> io::Result<String> {
    let mut needed = 0u32;
    // SAFETY: a size query: null buffer of length 0, `needed` is a valid out pointer.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    if ok == 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(ERROR_INSUFFICIENT_BUFFER as i32) {
            return Err(e);
        }
    }
    // u64 elements: TOKEN_USER holds pointers, so the buffer must be pointer-aligned.
    let mut buffer = vec![0u64; (needed as usize).div_ceil(8).max(1)];
    // SAFETY: `buffer` is writable for `buffer.len() * 8 >= needed` bytes and aligned for
    // TOKEN_USER; `needed` is a valid out pointer.
    let ok = unsafe {
        GetTokenInformation(
            token.as_raw_handle() as HANDLE,
            TokenUser,
            buffer.as_mut_ptr().cast::<c_void>(),
            (buffer.len() * 8) as u32,
            &mut needed,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: GetTokenInformation(TokenUser) succeeded, so the buffer starts with a TOKEN_USER whose
    // SID points into the same buffer, which lives until the end of this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID (see above); `text` is a valid out pointer that receives a
    // LocalAlloc'd string, which LocalWide frees.
    let ok = unsafe { ConvertSidToStringSidW(sid, &mut text) };
    if ok == 0 || text.is_null() {
        return Err(io::Error::last_os_error());
    }
    Ok(LocalWide(text).to_string_lossy())
}

/// The SID of the user this process runs as (`S-1-5-21-…`).
pub fn current_user_sid() -> io::Result<String> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: GetCurrentProcess returns a pseudo-handle that needs no closing; `token` is a valid
    // out pointer whose handle `owned` takes over.
    let ok = unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    token_user_sid(&owned(token)?)
}

fn open_process(pid: u32) -> io::Result<OwnedHandle> {
    // SAFETY: plain call with an access mask and a pid; the handle (or null) is checked by `owned`.
    owned(unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) })
}

/// The SID of the user process `pid` runs as. Fails when the process is gone or when its owner
/// does not let us look (another user's process, as a rule).
pub fn process_user_sid(pid: u32) -> io::Result<String> {
    let process = open_process(pid)?;
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is an open process handle; `token` is a valid out pointer.
    let ok =
        unsafe { OpenProcessToken(process.as_raw_handle() as HANDLE, TOKEN_QUERY, &mut token) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    token_user_sid(&owned(token)?)
}

/// The full path of the executable of process `pid`.
pub fn process_image(pid: u32) -> io::Result<String> {
    let process = open_process(pid)?;
    let mut buffer = vec![0u16; 32 * 1024];
    let mut len = buffer.len() as u32;
    // SAFETY: `buffer` is writable for `len` UTF-16 units; `len` is in/out as documented.
    let ok = unsafe {
        QueryFullProcessImageNameW(
            process.as_raw_handle() as HANDLE,
            PROCESS_NAME_WIN32,
            buffer.as_mut_ptr(),
            &mut len,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(String::from_utf16_lossy(&buffer[..len as usize]))
}

/// The process id of the client connected to a named pipe's server end.
pub fn pipe_client_pid(pipe: &NamedPipeServer) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the handle belongs to a live NamedPipeServer borrowed for this call; `pid` is a valid
    // out pointer.
    let ok = unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// A security descriptor made from SDDL, for creating pipe instances.
pub struct PipeSecurity {
    descriptor: PSECURITY_DESCRIPTOR,
}

// SAFETY: the descriptor is an immutable, self-contained block of memory owned by this value; the
// OS only reads it, from any thread.
unsafe impl Send for PipeSecurity {}
// SAFETY: as above: shared use only reads it.
unsafe impl Sync for PipeSecurity {}

impl PipeSecurity {
    pub fn from_sddl(sddl: &str) -> io::Result<Self> {
        let text = wide(OsStr::new(sddl));
        let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated UTF-16 that outlives the call; `descriptor` is a valid
        // out pointer; the size out pointer may be null.
        let ok = unsafe {
            ConvertStringSecurityDescriptorToSecurityDescriptorW(
                text.as_ptr(),
                SDDL_REVISION_1,
                &mut descriptor,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 || descriptor.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { descriptor })
    }

    /// Creates a pipe instance named `name` with `options` and this descriptor.
    pub fn create(&self, options: &ServerOptions, name: &OsStr) -> io::Result<NamedPipeServer> {
        let mut attributes = SECURITY_ATTRIBUTES {
            nLength: std::mem::size_of::<SECURITY_ATTRIBUTES>() as u32,
            lpSecurityDescriptor: self.descriptor,
            bInheritHandle: 0,
        };
        // SAFETY: `attributes` is a valid SECURITY_ATTRIBUTES pointing at a descriptor that
        // `self` keeps alive for the call; CreateNamedPipe copies what it needs.
        unsafe {
            options.create_with_security_attributes_raw(
                name,
                (&mut attributes as *mut SECURITY_ATTRIBUTES).cast::<c_void>(),
            )
        }
    }
}

impl Drop for PipeSecurity {
    fn drop(&mut self) {
        // SAFETY: the descriptor was LocalAlloc'd by ConvertStringSecurityDescriptor… for us and is
        // freed once.
        unsafe {
            LocalFree(self.descriptor as HLOCAL);
        }
    }
}

/// Opens `url` with the user's default handler (`ShellExecuteW(…, "open", url, …)`): no command
/// line is built, so `&` and quotes in the URL stay part of it.
pub fn shell_open(url: &str) -> Result<(), String> {
    let url = url.to_owned();
    // ShellExecute wants COM initialised on its thread: a short-lived thread of our own keeps that
    // away from the caller's (tokio) threads.
    std::thread::spawn(move || {
        use windows_sys::Win32::System::Com::{
            CoInitializeEx, CoUninitialize, COINIT_APARTMENTTHREADED, COINIT_DISABLE_OLE1DDE,
        };
        use windows_sys::Win32::UI::Shell::ShellExecuteW;
        use windows_sys::Win32::UI::WindowsAndMessaging::SW_SHOWNORMAL;

        let file = wide(OsStr::new(&url));
        let verb = wide(OsStr::new("open"));
        // SAFETY: plain call on this thread; a failure (already initialised) is harmless and
        // only a success is balanced by CoUninitialize below.
        let com = unsafe {
            CoInitializeEx(
                std::ptr::null(),
                (COINIT_APARTMENTTHREADED | COINIT_DISABLE_OLE1DDE) as u32,
            )
        };
        // SAFETY: `verb` and `file` are NUL-terminated UTF-16 that outlive the call; the other
        // pointers may be null.
        let result = unsafe {
            ShellExecuteW(
                std::ptr::null_mut(),
                verb.as_ptr(),
                file.as_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                SW_SHOWNORMAL,
            )
        };
        if com >= 0 {
            // SAFETY: balances the successful CoInitializeEx on this same thread.
            unsafe { CoUninitialize() };
        }
        // ShellExecute returns a value > 32 on success, an error code otherwise.
        let code = result as isize;
        if code > 32 {
            Ok(())
        } else {
            Err(format!("the shell could not open the URL (error {code})"))
        }
    })
    .join()
    .map_err(|_| "the shell opener thread failed".to_owned())?
}

/// An open registry key, closed on drop.
struct RegistryHandle(HKEY);

impl Drop for RegistryHandle {
    fn drop(&mut self) {
        // SAFETY: the key was opened by RegOpenKeyExW for us and is closed once.
        unsafe {
            RegCloseKey(self.0);
        }
    }
}

// SAFETY: a registry handle may be used and closed from any thread.
unsafe impl Send for RegistryHandle {}

fn open_for_notify(root: HKEY, path: &str) -> io::Result<RegistryHandle> {
    let path = wide(OsStr::new(path));
    let mut key: HKEY = std::ptr::null_mut();
    // SAFETY: `root` is a predefined key; `path` is NUL-terminated and outlives the call; `key` is
    // a valid out pointer that RegistryHandle takes over on success.
    let status = unsafe { RegOpenKeyExW(root, path.as_ptr(), 0, KEY_NOTIFY, &mut key) };
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    Ok(RegistryHandle(key))
}

/// An auto-reset event, closed on drop.
fn new_event() -> io::Result<OwnedHandle> {
    // SAFETY: no attributes, auto-reset, initially unsignalled, unnamed; `owned` checks the result.
    owned(unsafe { CreateEventW(std::ptr::null(), 0, 0, std::ptr::null()) })
}

fn raw(handle: &OwnedHandle) -> HANDLE {
    handle.as_raw_handle() as HANDLE
}

/// One hive's watch: the deepest existing key of `SOFTWARE\Policies\<name>`, armed to signal
/// `event` once on a change.
struct HiveWatch {
    root: HKEY,
    path: String,
    key: Option<RegistryHandle>,
    event: OwnedHandle,
}

// SAFETY: HKEY roots are process-wide constants; the rest is Send already.
unsafe impl Send for HiveWatch {}

impl HiveWatch {
    /// Opens the policy key (or, while it does not exist, its parent, so that its creation is
    /// noticed) and asks for one notification on `event`.
    fn arm(&mut self) {
        self.key = None;
        let parent = self.path.rsplit_once('\\').map(|(p, _)| p.to_owned());
        let candidates = [Some(self.path.clone()), parent, Some("SOFTWARE".to_owned())];
        for (depth, path) in candidates.into_iter().flatten().enumerate() {
            match open_for_notify(self.root, &path) {
                Ok(key) => {
                    // The policy key is watched with its subkeys (servers live there); a parent
                    // only for subkeys appearing or disappearing.
                    let (subtree, filter) = if depth == 0 {
                        (1, REG_NOTIFY_CHANGE_NAME | REG_NOTIFY_CHANGE_LAST_SET)
                    } else {
                        (0, REG_NOTIFY_CHANGE_NAME)
                    };
                    // SAFETY: `key` is open with KEY_NOTIFY and `event` is a valid event; both
                    // outlive the registration (it ends when the key is closed).
                    let status = unsafe {
                        RegNotifyChangeKeyValue(key.0, subtree, filter, raw(&self.event), 1)
                    };
                    if status == ERROR_SUCCESS {
                        tracing::debug!(key = %path, "watching the registry for policy changes");
                        self.key = Some(key);
                    } else {
                        tracing::warn!(key = %path, error = %io::Error::from_raw_os_error(status as i32), "cannot watch the registry key");
                    }
                    return;
                }
                Err(e) if e.raw_os_error() == Some(ERROR_FILE_NOT_FOUND as i32) => continue,
                Err(e) => {
                    tracing::warn!(key = %path, error = %e, "cannot open the registry key to watch it");
                    return;
                }
            }
        }
    }
}

/// A thread waiting for registry notifications; dropping it stops and joins the thread.
pub struct RegistryWatch {
    stop: OwnedHandle,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RegistryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryWatch").finish_non_exhaustive()
    }
}

impl Drop for RegistryWatch {
    fn drop(&mut self) {
        // SAFETY: `stop` is a valid event handle owned by self.
        unsafe {
            SetEvent(raw(&self.stop));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Calls `on_change` (on a thread of its own) whenever `HKLM\<path>` or `HKCU\<path>` changes —
/// values, subkeys, or the key itself appearing or disappearing.
pub fn watch_registry_keys(
    path: &str,
    mut on_change: impl FnMut() + Send + 'static,
) -> io::Result<RegistryWatch> {
    let stop = new_event()?;
    let mut hives = Vec::new();
    for root in [HKEY_LOCAL_MACHINE, HKEY_CURRENT_USER] {
        hives.push(HiveWatch {
            root,
            path: path.to_owned(),
            key: None,
            event: new_event()?,
        });
    }
    let stop_handle = stop.try_clone()?;
    let thread = std::thread::Builder::new()
        .name("lanyard-registry-watch".into())
        .spawn(move || {
            for hive in &mut hives {
                hive.arm();
            }
            let handles: Vec<HANDLE> = std::iter::once(raw(&stop_handle))
                .chain(hives.iter().map(|h| raw(&h.event)))
                .collect();
            loop {
                // SAFETY: `handles` holds valid event handles owned by this thread's data for
                // the whole wait.
                let woke = unsafe {
                    WaitForMultipleObjects(handles.len() as u32, handles.as_ptr(), 0, INFINITE)
                };
                let index = woke.wrapping_sub(WAIT_OBJECT_0) as usize;
                if index == 0 || index >= handles.len() {
                    return; // stopped, or the wait failed
                }
                // The key may have been created or deleted: re-open and re-arm (one-shot).
                hives[index - 1].arm();
                on_change();
            }
        })?;
    Ok(RegistryWatch {
        stop,
        thread: Some(thread),
    })
}

/// Makes `file` this process's standard error handle (`lanyard agent --log-file`: its error lines
/// and a panic's message go to the log file). Rust's stderr looks the handle up on every write.
/// The handle stays owned by `file`; the caller keeps `file` open while it is stderr.
pub fn set_stderr(file: &std::fs::File) -> io::Result<()> {
    use windows_sys::Win32::System::Console::{SetStdHandle, STD_ERROR_HANDLE};
    // SAFETY: `file` owns a valid file handle for the call; SetStdHandle only records it.
    let ok = unsafe { SetStdHandle(STD_ERROR_HANDLE, file.as_raw_handle() as HANDLE) };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
