// The terminal side of `elm chat`: reading messages (line editing and history through libedit
// when stdin is a terminal, plain line reads otherwise, so scripted input works as before), the
// commands handled locally (/help, /reset, /exit; never sent to the model), colour (on a terminal
// only, and never with NO_COLOR set), and Ctrl-C, which stops the reply being generated instead
// of the session (at the prompt, a second Ctrl-C in a row quits, as does Ctrl-D).
#pragma once

#include <memory>
#include <string>

namespace elm::cli {

enum class ChatCommand { kNone, kHelp, kReset, kExit, kUnknown };

// The command a line holds: "/help" or "/?", "/reset" or "/clear", "/exit", "/quit" or "/bye"
// (surrounding spaces ignored); any other "/word" is kUnknown. kNone for a message, including
// one written "//..." (see UnescapeMessage).
ChatCommand ParseChatCommand(const std::string& line);

// A message that starts with "//" is sent with one "/" (so a message can start with a slash).
std::string UnescapeMessage(const std::string& line);

// The help text /help prints.
const char* ChatHelpText();

class ChatTerminal {
 public:
  // Installs the SIGINT handler (restored by the destructor) and, when stdin is a terminal and
  // elm was built with libedit, the line editor.
  ChatTerminal();
  ~ChatTerminal();
  ChatTerminal(const ChatTerminal&) = delete;
  ChatTerminal& operator=(const ChatTerminal&) = delete;

  enum class Read { kLine, kInterrupted, kEnd };
  // Reads one message into *line: on a terminal one edited line (kept in the history); otherwise
  // a line, where a trailing backslash continues the message on the next one.
  Read ReadMessage(std::string* line);

  // Ctrl-C since the last ClearInterrupt (the reply being generated polls it).
  bool interrupted() const;
  void ClearInterrupt();

  bool interactive() const { return interactive_; }
  bool colour() const { return colour_; }
  // Wraps text in an SGR colour (e.g. "2" dim, "33" yellow) when colour is on.
  std::string Paint(const char* sgr, const std::string& text) const;

 private:
  struct Editor;
  std::unique_ptr<Editor> editor_;  // null: plain reads
  bool interactive_ = false;
  bool colour_ = false;
};

}  // namespace elm::cli
