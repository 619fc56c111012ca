// The composer: text (Enter sends, Shift+Enter a new line), replies, editing,
// files by button, drag and drop or paste, with upload progress and cancel.
import { useEffect, useRef, useState } from 'preact/hooks';
import { t } from '../core/i18n.js';
import { person } from '../core/people.js';
import { useStore } from '../core/store.js';
import { IconButton } from '../core/ui.jsx';
import { edit, sendFile, sendText, typingDone, typingNow, uploads } from './state.js';

export function Composer({ chat, reply, onReplyDone, editing, onEditDone }) {
  const [text, setText] = useState('');
  const [drag, setDrag] = useState(false);
  const area = useRef(null);
  const file = useRef(null);
  const mine = useStore(uploads, (s) => s.byChat[chat.id] || []);

  useEffect(() => {
    if (editing) setText(editing.content);
    if (editing || reply) area.current?.focus();
  }, [editing, reply]);
  useEffect(() => () => typingDone(chat.id), [chat.id]);

  async function submit(e) {
    e?.preventDefault();
    const content = text.trim();
    if (!content) return;
    setText('');
    typingDone(chat.id);
    if (editing) {
      onEditDone();
      if (content !== editing.content) await edit(editing, content);
      return;
    }
    const to = reply?.id;
    onReplyDone();
    await sendText(chat.id, content, to);
  }

  const files = (list) => {
    for (const f of list) sendFile(chat.id, f);
  };

  return (
    <div
      class={`composer-wrap ${drag ? 'dragging' : ''}`}
      onDragOver={(e) => {
        if ([...(e.dataTransfer?.types || [])].includes('Files')) {
          e.preventDefault();
          setDrag(true);
        }
      }}
      onDragLeave={() => setDrag(false)}
      onDrop={(e) => {
        e.preventDefault();
        setDrag(false);
        files(e.dataTransfer?.files || []);
      }}
    >
      {drag && <div class="drop-hint">{t('chat.dropHere')}</div>}
      {mine.map((u) => (
        <div class="upload" key={u.id}>
          <progress max="1" value={u.progress} aria-label={t('chat.uploading', { name: u.name, pct: Math.round(u.progress * 100) })} />
          <span class="upload-name">{t('chat.uploading', { name: u.name, pct: Math.round(u.progress * 100) })}</span>
          <IconButton icon="close" label={t('chat.cancelUpload', { name: u.name })} onClick={u.abort} />
        </div>
      ))}
      {(reply || editing) && (
        <div class="composer-context">
          <span class="grow">
            <strong>{editing ? t('chat.editing') : t('chat.replyingTo', { name: person(reply.senderChatPath).name })}</strong>
            <span class="muted"> {(editing || reply).content}</span>
          </span>
          <IconButton
            icon="close"
            label={editing ? t('chat.cancelEdit') : t('chat.cancelReply')}
            onClick={() => {
              if (editing) {
                onEditDone();
                setText('');
              } else onReplyDone();
            }}
          />
        </div>
      )}
      <form class="composer" onSubmit={submit}>
        <IconButton icon="attach" label={t('chat.attach')} onClick={() => file.current?.click()} />
        <input ref={file} type="file" multiple class="sr-only" tabIndex={-1} aria-hidden="true" aria-label={t('chat.attach')} onChange={(e) => { files(e.currentTarget.files || []); e.currentTarget.value = ''; }} />
        <textarea
          ref={area}
          rows={1}
          value={text}
          aria-label={t('chat.message')}
          placeholder={t('chat.message')}
          maxLength={16000}
          onInput={(e) => {
            setText(e.currentTarget.value);
            if (!editing) typingNow(chat.id);
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
              e.preventDefault();
              submit();
            } else if (e.key === 'Escape' && (reply || editing)) {
              if (editing) {
                onEditDone();
                setText('');
              } else onReplyDone();
            }
          }}
          onPaste={(e) => {
            const pasted = [...(e.clipboardData?.files || [])];
            if (pasted.length) {
              e.preventDefault();
              files(pasted);
            }
          }}
        />
        <IconButton icon="send" label={t('chat.send')} class="send" type="submit" disabled={!text.trim()} />
      </form>
    </div>
  );
}
