# Removes every installed Lanyard by its UpgradeCode, whatever its ProductCode (every build has a
# new one): the Intune (Win32 app) uninstall command
#   powershell.exe -ExecutionPolicy Bypass -File uninstall-lanyard.ps1
# run as System. Windows Installer's own RelatedProducts lists the ProductCodes installed under the
# UpgradeCode in deploy/windows/lanyard.wxs; each is removed silently. Exit code: the last
# msiexec's (0 = removed, 3010 = removed, restart needed), 0 when nothing was installed.
#
# What the .msi cannot remove (it runs as SYSTEM and never enters a user's profile) is listed in
# deploy/windows/README.md, "Uninstall: what stays", with the per-user clean-up.
#
# Not run on this project's machines (no PowerShell there; Wine's is a stub): checked by reading.
$UpgradeCode = '{5D571985-2634-4148-AE2C-E0860E381A18}'

$installer = New-Object -ComObject WindowsInstaller.Installer
$products = @($installer.RelatedProducts($UpgradeCode))
$code = 0
foreach ($product in $products) {
    Write-Output "msiexec /x $product /qn"
    $p = Start-Process -FilePath msiexec.exe -ArgumentList @('/x', $product, '/qn', '/norestart') -Wait -PassThru
    $code = $p.ExitCode
}
exit $code
