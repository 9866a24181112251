; Inno Setup 6 script: NimBridge's per-user Windows installer.
; packaging/build.py compiles it after PyInstaller, passing the defines below:
;   iscc /DAppVersion=0.4.0 /DSourceDir=dist\nimbridge /DOutputDir=dist
;        /DIconFile=build\nimbridge.ico /DLicenseFile=LICENSE packaging\windows\nimbridge.iss
; Per-user: no administrator rights, installs under %LOCALAPPDATA%\Programs.

#ifndef AppVersion
  #error Pass /DAppVersion=X.Y.Z (packaging/build.py does)
#endif
#ifndef SourceDir
  #error Pass /DSourceDir=<the PyInstaller onedir folder>
#endif
#ifndef OutputDir
  #define OutputDir "."
#endif

#define AppName "NimBridge"
; The tray app: a windowed executable, no console behind it.
#define GuiExe "nimbridge-gui.exe"
; app.autostart writes the same value, so the installer's option and the
; Settings dialog's "Start at login" are one switch.
#define RunValueName "NimBridge"
#define RunKey "Software\Microsoft\Windows\CurrentVersion\Run"

[Setup]
AppId={{00DE6F54-622F-4DC7-93B0-F55038E75BCE}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=NimBridge developers
AppComments=Run Claude Code on NVIDIA NIM and OpenAI-compatible models
VersionInfoVersion={#AppVersion}
PrivilegesRequired=lowest
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
DisableDirPage=auto
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir={#OutputDir}
OutputBaseFilename={#AppName}-{#AppVersion}-setup
#ifdef IconFile
SetupIconFile={#IconFile}
#endif
#ifdef LicenseFile
LicenseFile={#LicenseFile}
#endif
UninstallDisplayIcon={app}\{#GuiExe}
UninstallDisplayName={#AppName}
WizardStyle=modern
Compression=lzma2/max
SolidCompression=yes
; An upgrade or uninstall closes a running NimBridge first (Restart Manager).
CloseApplications=yes
RestartApplications=no

[Tasks]
Name: "startatlogin"; Description: "Start NimBridge when I sign in"; GroupDescription: "Start-up:"
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\{#GuiExe}"; Comment: "Run Claude Code on NVIDIA NIM"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#GuiExe}"; Tasks: desktopicon

[Registry]
Root: HKCU; Subkey: "{#RunKey}"; ValueType: string; ValueName: "{#RunValueName}"; ValueData: """{app}\{#GuiExe}"""; Tasks: startatlogin; Flags: uninsdeletevalue
; Removed at uninstall even when the Settings dialog (not this installer) set it.
Root: HKCU; Subkey: "{#RunKey}"; ValueType: none; ValueName: "{#RunValueName}"; Flags: uninsdeletevalue

[Run]
Filename: "{app}\{#GuiExe}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallRun]
; A tray app may be running: stop it so its files can be removed.
Filename: "{sys}\taskkill.exe"; Parameters: "/F /IM {#GuiExe}"; Flags: runhidden; RunOnceId: "StopNimBridge"

[UninstallDelete]
; Only the program folder: the settings file and keychain entries are the user's.
Type: filesandordirs; Name: "{app}"
