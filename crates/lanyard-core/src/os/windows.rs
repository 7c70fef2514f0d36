//! Windows FFI (`windows-sys`) behind safe functions: who is at either end of a pipe, the pipe's
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
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
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

/// The process id of the server that created the named pipe a client opened (as a file).
pub fn pipe_server_pid(pipe: &std::fs::File) -> io::Result<u32> {
    let mut pid = 0u32;
    // SAFETY: the handle belongs to a live File borrowed for this call; `pid` is a valid out
    // pointer.
    let ok = unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle() as HANDLE, &mut pid) };
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

/// A file or folder opened for reading (a link or junction is opened as itself, not followed),
/// with what its security descriptor said at that moment. The handle denies delete sharing, so the
/// object cannot be renamed or replaced while it is held.
pub struct SecuredObject {
    handle: OwnedHandle,
    pub facts: super::SecurityFacts,
}

impl SecuredObject {
    /// The file, for reading what was judged.
    pub fn into_file(self) -> std::fs::File {
        std::fs::File::from(self.handle)
    }
}

/// Opens `path` (a folder when `directory`) and reads its owner, its DACL and whether it is a
/// reparse point, all from the one open handle.
pub fn open_with_security(path: &std::path::Path, directory: bool) -> io::Result<SecuredObject> {
    use windows_sys::Win32::Security::Authorization::{GetSecurityInfo, SE_FILE_OBJECT};
    use windows_sys::Win32::Security::{
        AclSizeInformation, GetAce, GetAclInformation, ACE_HEADER, ACL, ACL_SIZE_INFORMATION,
        DACL_SECURITY_INFORMATION, INHERIT_ONLY_ACE, OWNER_SECURITY_INFORMATION, PSID,
    };
    use windows_sys::Win32::Storage::FileSystem::{
        CreateFileW, GetFileInformationByHandle, BY_HANDLE_FILE_INFORMATION,
        FILE_ATTRIBUTE_REPARSE_POINT, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
        FILE_GENERIC_READ, FILE_LIST_DIRECTORY, FILE_SHARE_READ, FILE_SHARE_WRITE, OPEN_EXISTING,
        READ_CONTROL, SYNCHRONIZE,
    };

    let name = wide(path.as_os_str());
    let (access, share, flags) = if directory {
        (
            FILE_LIST_DIRECTORY | READ_CONTROL | SYNCHRONIZE,
            FILE_SHARE_READ | FILE_SHARE_WRITE,
            FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OPEN_REPARSE_POINT,
        )
    } else {
        (
            FILE_GENERIC_READ | READ_CONTROL,
            FILE_SHARE_READ,
            FILE_FLAG_OPEN_REPARSE_POINT,
        )
    };
    // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call; no security attributes or
    // template; the returned handle is checked and owned by `owned`.
    let handle = owned(unsafe {
        CreateFileW(
            name.as_ptr(),
            access,
            share,
            std::ptr::null(),
            OPEN_EXISTING,
            flags,
            std::ptr::null_mut(),
        )
    })?;
    let raw = handle.as_raw_handle() as HANDLE;

    // SAFETY: an all-zero BY_HANDLE_FILE_INFORMATION is a valid value (plain integers).
    let mut info: BY_HANDLE_FILE_INFORMATION = unsafe { std::mem::zeroed() };
    // SAFETY: `raw` is an open handle owned above; `info` is a valid out pointer.
    if unsafe { GetFileInformationByHandle(raw, &mut info) } == 0 {
        return Err(io::Error::last_os_error());
    }
    let reparse_point = info.dwFileAttributes & FILE_ATTRIBUTE_REPARSE_POINT != 0;

    let mut owner: PSID = std::ptr::null_mut();
    let mut dacl: *mut ACL = std::ptr::null_mut();
    let mut descriptor: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
    // SAFETY: `raw` is open with READ_CONTROL; the out pointers are valid; on success the owner
    // and DACL point into `descriptor`, which LocalFree releases below after their last use.
    let status = unsafe {
        GetSecurityInfo(
            raw,
            SE_FILE_OBJECT,
            OWNER_SECURITY_INFORMATION | DACL_SECURITY_INFORMATION,
            &mut owner,
            std::ptr::null_mut(),
            &mut dacl,
            std::ptr::null_mut(),
            &mut descriptor,
        )
    };
    if status != ERROR_SUCCESS {
        return Err(io::Error::from_raw_os_error(status as i32));
    }
    struct Descriptor(PSECURITY_DESCRIPTOR);
    impl Drop for Descriptor {
        fn drop(&mut self) {
            // SAFETY: allocated by GetSecurityInfo for us with LocalAlloc; freed once.
            unsafe {
                LocalFree(self.0 as HLOCAL);
            }
        }
    }
    let _descriptor = Descriptor(descriptor);

    let sid_text = |sid: PSID| -> io::Result<String> {
        let mut text: *mut u16 = std::ptr::null_mut();
        // SAFETY: `sid` points at a valid SID inside the live descriptor; `text` receives a
        // LocalAlloc'd string that LocalWide frees.
        let ok = unsafe { ConvertSidToStringSidW(sid, &mut text) };
        if ok == 0 || text.is_null() {
            return Err(io::Error::last_os_error());
        }
        Ok(LocalWide(text).to_string_lossy())
    };
    if owner.is_null() {
        return Err(io::Error::other("the security descriptor names no owner"));
    }
    let owner = sid_text(owner)?;

    let dacl = if dacl.is_null() {
        None
    } else {
        // SAFETY: an all-zero ACL_SIZE_INFORMATION is a valid value (plain integers).
        let mut size: ACL_SIZE_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: `dacl` is a valid ACL inside the live descriptor; `size` is writable for its
        // own size, which is passed.
        let ok = unsafe {
            GetAclInformation(
                dacl,
                (&mut size as *mut ACL_SIZE_INFORMATION).cast::<c_void>(),
                std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                AclSizeInformation,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let mut entries = Vec::with_capacity(size.AceCount as usize);
        for index in 0..size.AceCount {
            let mut ace: *mut c_void = std::ptr::null_mut();
            // SAFETY: `index` is below the ACL's entry count; `ace` is a valid out pointer that
            // receives a pointer into the ACL.
            if unsafe { GetAce(dacl, index, &mut ace) } == 0 || ace.is_null() {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: every ACE starts with an ACE_HEADER (read unaligned to be safe).
            let header = unsafe { std::ptr::read_unaligned(ace.cast::<ACE_HEADER>()) };
            let kind = u32::from(header.AceType);
            // Allow kinds: plain (0), compound (4), object (5), callback (9), callback object (11).
            let allows = matches!(kind, 0 | 4 | 5 | 9 | 11);
            // SAFETY: every allow and deny ACE has its 32-bit access mask right after the header.
            let mask = unsafe {
                std::ptr::read_unaligned(
                    ace.cast::<u8>()
                        .add(std::mem::size_of::<ACE_HEADER>())
                        .cast::<u32>(),
                )
            };
            // Plain (0, 1) and callback (9, 10) entries have the SID right after the mask.
            let sid = if matches!(kind, 0 | 1 | 9 | 10) {
                // SAFETY: for these kinds the SID starts after the header and the mask, inside
                // the entry, which lives in the descriptor.
                let sid = unsafe { ace.cast::<u8>().add(std::mem::size_of::<ACE_HEADER>() + 4) };
                Some(sid_text(sid.cast::<c_void>())?)
            } else {
                None
            };
            entries.push(super::AceFacts {
                allows,
                inherit_only: u32::from(header.AceFlags) & INHERIT_ONLY_ACE != 0,
                mask,
                sid,
            });
        }
        Some(entries)
    };
    Ok(SecuredObject {
        handle,
        facts: super::SecurityFacts {
            owner,
            dacl,
            reparse_point,
        },
    })
}

/// The process id that owns the TCP connection from `local` to `remote` (IPv4 table first, then
/// IPv6, where a dual-stack socket shows its IPv4-mapped addresses), or `None` when no such
/// connection is listed.
pub fn tcp_connection_owner_pid(
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
) -> io::Result<Option<u32>> {
    use std::net::{IpAddr, Ipv6Addr};
    use windows_sys::Win32::NetworkManagement::IpHelper::{
        MIB_TCP6ROW_OWNER_PID, MIB_TCP6TABLE_OWNER_PID, MIB_TCPROW_OWNER_PID,
        MIB_TCPTABLE_OWNER_PID, TCP_TABLE_OWNER_PID_ALL,
    };
    const AF_INET: u32 = 2;
    const AF_INET6: u32 = 23;
    // The port fields hold the port in network byte order in their low 16 bits.
    let port_of = |field: u32| u16::from_be((field & 0xffff) as u16);
    let v6 = |addr: std::net::SocketAddr| match addr.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };

    if let (IpAddr::V4(local_ip), IpAddr::V4(remote_ip)) = (local.ip(), remote.ip()) {
        let buffer = extended_tcp_table(AF_INET, TCP_TABLE_OWNER_PID_ALL)?;
        // SAFETY: GetExtendedTcpTable filled `buffer` with a MIB_TCPTABLE_OWNER_PID: a u32 count
        // followed by that many rows, all inside the buffer it sized; the buffer is u64-aligned
        // and rows are read unaligned anyway.
        let rows = unsafe {
            let table = buffer.as_ptr().cast::<MIB_TCPTABLE_OWNER_PID>();
            let count = std::ptr::addr_of!((*table).dwNumEntries).read_unaligned() as usize;
            let first = std::ptr::addr_of!((*table).table).cast::<MIB_TCPROW_OWNER_PID>();
            (0..count)
                .map(|i| first.add(i).read_unaligned())
                .collect::<Vec<_>>()
        };
        for row in rows {
            if std::net::Ipv4Addr::from(row.dwLocalAddr.to_ne_bytes()) == local_ip
                && port_of(row.dwLocalPort) == local.port()
                && std::net::Ipv4Addr::from(row.dwRemoteAddr.to_ne_bytes()) == remote_ip
                && port_of(row.dwRemotePort) == remote.port()
            {
                return Ok(Some(row.dwOwningPid));
            }
        }
    }
    let buffer = extended_tcp_table(AF_INET6, TCP_TABLE_OWNER_PID_ALL)?;
    // SAFETY: as above, for a MIB_TCP6TABLE_OWNER_PID.
    let rows = unsafe {
        let table = buffer.as_ptr().cast::<MIB_TCP6TABLE_OWNER_PID>();
        let count = std::ptr::addr_of!((*table).dwNumEntries).read_unaligned() as usize;
        let first = std::ptr::addr_of!((*table).table).cast::<MIB_TCP6ROW_OWNER_PID>();
        (0..count)
            .map(|i| first.add(i).read_unaligned())
            .collect::<Vec<_>>()
    };
    Ok(rows
        .into_iter()
        .find(|row| {
            Ipv6Addr::from(row.ucLocalAddr) == v6(local)
                && port_of(row.dwLocalPort) == local.port()
                && Ipv6Addr::from(row.ucRemoteAddr) == v6(remote)
                && port_of(row.dwRemotePort) == remote.port()
        })
        .map(|row| row.dwOwningPid))
}

/// The raw bytes of one `GetExtendedTcpTable` answer, grown until the table fits (connections
/// come and go between the size query and the read).
fn extended_tcp_table(
    family: u32,
    class: windows_sys::Win32::NetworkManagement::IpHelper::TCP_TABLE_CLASS,
) -> io::Result<Vec<u64>> {
    use windows_sys::Win32::NetworkManagement::IpHelper::GetExtendedTcpTable;
    let mut size = 16 * 1024u32;
    for _ in 0..8 {
        let mut buffer = vec![0u64; (size as usize).div_ceil(8)];
        let mut len = (buffer.len() * 8) as u32;
        // SAFETY: `buffer` is writable for `len` bytes and u64-aligned; `len` is in/out.
        let status = unsafe {
            GetExtendedTcpTable(
                buffer.as_mut_ptr().cast::<c_void>(),
                &mut len,
                0,
                family,
                class,
                0,
            )
        };
        match status {
            ERROR_SUCCESS => return Ok(buffer),
            ERROR_INSUFFICIENT_BUFFER => size = len.max(size) + 4096,
            other => return Err(io::Error::from_raw_os_error(other as i32)),
        }
    }
    Err(io::Error::other("the TCP table kept growing"))
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
